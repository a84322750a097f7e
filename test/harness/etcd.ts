// Real etcd for tests: a single member or a three-member cluster on
// loopback (free ports, data under makeRunDir, on a tmpfs when root so fsync
// is cheap), with kill -9 and restart of one member, torn down via onTeardown.
// With `tls: true`, clients and peers speak TLS and must show a certificate
// of the cluster's CA (etcd's --client-cert-auth, --peer-client-cert-auth).
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { freeLoopbackPort } from '../../src/etcd/embedded';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { makeRunDir, onTeardown, removeTree } from './teardown';
import { run, sleep } from './exec';
import { etcdTlsFlags, makeTestCerts, TestCerts } from './certs';

export const ETCD_BIN = '/usr/bin/etcd';

/** A loopback TCP port that was free a moment ago (the helper the embedded member uses). */
export const freePort = freeLoopbackPort;

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  logFile: string;
  pidFile: string;
  proc?: ChildProcess;
}

export class EtcdCluster {
  private constructor(
    readonly dir: string,
    readonly members: EtcdMember[],
    private readonly token: string,
    /** The CA, server and client certificates of a TLS cluster. */
    readonly certs?: TestCerts,
  ) {}

  /** Client URLs of every member: what Datastore takes. */
  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  /** Starts `size` members (1 or 3) and waits until every one reports healthy. */
  static async start(opts: { size?: 1 | 3; tls?: boolean } = {}): Promise<EtcdCluster> {
    const size = opts.size ?? 3;
    const dir = await makeRunDir('etcd');
    onTeardown(`removing ${dir}`, () => removeTree(dir));
    let certs: TestCerts | undefined;
    if (opts.tls) {
      fs.mkdirSync(path.join(dir, 'certs'), { mode: 0o700 });
      certs = makeTestCerts(path.join(dir, 'certs'));
    }
    const scheme = certs ? 'https' : 'http';
    const dataRoot = path.join(dir, 'data');
    fs.mkdirSync(dataRoot);
    if (process.getuid?.() === 0) {
      // etcd fsyncs every commit; on a tmpfs that costs nothing (3.4 has no --unsafe-no-fsync).
      const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=4g', 'tmpfs', dataRoot]);
      if (m.code !== 0) console.error(`etcd harness: no tmpfs (${m.stderr.trim()}); using disk`);
    }
    const members: EtcdMember[] = [];
    for (let i = 0; i < size; i++) {
      const name = `m${i}`;
      members.push({
        name,
        clientUrl: `${scheme}://127.0.0.1:${await freePort()}`,
        peerUrl: `${scheme}://127.0.0.1:${await freePort()}`,
        dataDir: path.join(dataRoot, name),
        logFile: path.join(dir, `${name}.log`),
        pidFile: path.join(dir, `${name}.pid`),
      });
    }
    const c = new EtcdCluster(dir, members, `t-${path.basename(dir)}`, certs);
    onTeardown(`etcd cluster ${dir}`, () => c.stop());
    for (const m of members) c.spawn(m, 'new');
    await c.waitHealthy(members, 60_000);
    return c;
  }

  private spawn(m: EtcdMember, state: 'new' | 'existing'): void {
    const initialCluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl,
      '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', state,
      '--initial-cluster-token', this.token,
      // Short heartbeats so a killed leader is replaced within about a second,
      // not so short that a loaded 2-core machine triggers needless elections.
      '--heartbeat-interval', '100',
      '--election-timeout', '1000',
      // Block values are rewritten on every allocation: keep history short.
      '--auto-compaction-mode', 'revision',
      '--auto-compaction-retention', '5000',
      '--log-level', 'warn',
      '--logger', 'zap',
      ...(this.certs ? etcdTlsFlags(this.certs) : []),
    ];
    const fd = fs.openSync(m.logFile, 'a');
    try {
      m.proc = spawn(ETCD_BIN, args, { stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    m.proc.once('error', () => undefined);
    fs.writeFileSync(m.pidFile, String(m.proc.pid));
  }

  async waitHealthy(members: EtcdMember[] = this.members, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of members) {
      for (;;) {
        if (m.proc && m.proc.exitCode !== null) {
          throw new Error(`etcd member ${m.name} exited ${m.proc.exitCode}: ${tail(m.logFile)}`);
        }
        try {
          const body = JSON.parse(await this.request(m, 'GET', '/health', 1000)) as { health?: string };
          if (body.health === 'true') break;
        } catch {
          /* not up yet */
        }
        if (Date.now() > deadline) throw new Error(`etcd member ${m.name} not healthy after ${timeoutMs} ms: ${tail(m.logFile)}`);
        await sleep(100);
      }
    }
  }

  /** Index of the current raft leader (asked through the members' JSON gateway). */
  async leaderIndex(): Promise<number> {
    const ids: string[] = [];
    let leader = '';
    for (const m of this.members) {
      try {
        const s = JSON.parse(await this.request(m, 'POST', '/v3/maintenance/status', 2000, '{}')) as { header: { member_id: string }; leader: string };
        ids.push(s.header.member_id);
        leader = s.leader;
      } catch {
        ids.push('');
      }
    }
    const i = ids.indexOf(leader);
    if (i < 0) throw new Error('etcd cluster has no leader that a member reports');
    return i;
  }

  /** One call on a member's HTTP (JSON gateway) API, with the client certificate when the cluster is TLS. */
  request(m: EtcdMember, method: string, urlPath: string, timeoutMs: number, body?: string): Promise<string> {
    const url = new URL(urlPath, m.clientUrl);
    const c = this.certs;
    const tls = c ? { ca: fs.readFileSync(c.ca), cert: fs.readFileSync(c.clientCert), key: fs.readFileSync(c.clientKey) } : {};
    return new Promise((resolve, reject) => {
      const req = (url.protocol === 'https:' ? https : http).request(url, { method, timeout: timeoutMs, agent: false, ...tls }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve(text));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${url.href}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** kill -9 one member (index), and wait for it to be gone. */
  async kill(i: number): Promise<void> {
    const m = this.members[i];
    const p = m.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await gone;
  }

  /** Starts a killed member again on its old data and ports; waits until healthy. */
  async restart(i: number): Promise<void> {
    const m = this.members[i];
    await this.kill(i);
    this.spawn(m, 'existing');
    await this.waitHealthy([m], 60_000);
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((_, i) => this.kill(i)));
  }
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}
