import http from 'node:http';
import https from 'node:https';

/**
 * What answers at an etcd client URL:
 * - 'etcd': an etcd server (GET /version names etcdserver);
 * - 'none': nothing listens (connection refused), so a member may be started there;
 * - 'other': something listens but is not etcd, or does not answer in time.
 */
export type ProbeResult = { kind: 'etcd'; version: string } | { kind: 'none' } | { kind: 'other'; detail: string };

/**
 * Where an HTTP GET of `path` on an etcd client URL goes: http(s)://host:port,
 * or unix:///path/to/socket (the embedded member).
 */
function target(endpoint: string, path: string): { url: URL; options: https.RequestOptions; get: typeof https.get } {
  if (endpoint.startsWith('unix://')) {
    const socketPath = endpoint.slice('unix://'.length);
    return { url: new URL(path, 'http://localhost'), options: { socketPath, path }, get: http.get as typeof https.get };
  }
  const url = new URL(path, endpoint);
  return { url, options: { rejectUnauthorized: false }, get: url.protocol === 'https:' ? https.get : (http.get as typeof https.get) };
}

/** The body of one GET on an etcd client URL (the embedded member's /health). */
export function etcdGet(endpoint: string, path: string, timeoutMs: number): Promise<string> {
  const t = target(endpoint, path);
  return new Promise((resolve, reject) => {
    const req = t.get(t.url, { ...t.options, timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${endpoint}${path} within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

// agent: false: a kept-alive socket to a member that has since stopped would
// report a reset, not the refused connection that means "nothing listens".
export function probeEtcd(endpoint: string, timeoutMs = 1000): Promise<ProbeResult> {
  const { url, options, get } = target(endpoint, '/version');
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ProbeResult) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = get(url, { ...options, timeout: timeoutMs, agent: false }, (res) => {
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
      // A unix socket file that is gone is "nothing listens" too.
      if (e.code === 'ECONNREFUSED' || (e.code === 'ENOENT' && endpoint.startsWith('unix://'))) done({ kind: 'none' });
      else done({ kind: 'other', detail: `${e.code ?? ''} ${e.message}`.trim() });
    });
  });
}
