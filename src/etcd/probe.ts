import http from 'node:http';
import https from 'node:https';

/**
 * What answers at an etcd client URL:
 * - 'etcd': an etcd server (GET /version names etcdserver);
 * - 'none': nothing listens (connection refused), so a member may be started there;
 * - 'other': something listens but is not etcd, or does not answer in time.
 */
export type ProbeResult = { kind: 'etcd'; version: string } | { kind: 'none' } | { kind: 'other'; detail: string };

// agent: false: a kept-alive socket to a member that has since stopped would
// report a reset, not the refused connection that means "nothing listens".
export function probeEtcd(endpoint: string, timeoutMs = 1000): Promise<ProbeResult> {
  const url = new URL('/version', endpoint);
  const get = url.protocol === 'https:' ? https.get : http.get;
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ProbeResult) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = get(url, { timeout: timeoutMs, rejectUnauthorized: false, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 4096) body += c;
      });
      res.on('end', () => {
        try {
          const v = JSON.parse(body) as { etcdserver?: string };
          if (typeof v.etcdserver === 'string') return done({ kind: 'etcd', version: v.etcdserver });
        } catch {
          /* not JSON: not etcd */
        }
        done({ kind: 'other', detail: `HTTP ${res.statusCode} from ${url.href} is not an etcd answer` });
      });
      res.on('error', (e) => done({ kind: 'other', detail: e.message }));
    });
    req.on('timeout', () => {
      req.destroy();
      done({ kind: 'other', detail: `no answer from ${url.href} within ${timeoutMs} ms` });
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') done({ kind: 'none' });
      else done({ kind: 'other', detail: `${e.code ?? ''} ${e.message}`.trim() });
    });
  });
}
