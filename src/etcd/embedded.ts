import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { etcdGet, probeEtcd } from './probe';
import { checkMemberData, ClusterMarker, EtcdClusterPlan } from './cluster';

export const ETCD_BINARY = '/usr/bin/etcd';

/**
 * The member's sockets in the state directory. etcd wants URLs of the form
 * unix://host:port and makes the socket file named "host:port" in its working
 * directory, so the port is part of the file name.
 */
export const EMBEDDED_CLIENT_SOCKET = 'etcd.sock:2379';
const EMBEDDED_PEER_SOCKET = 'etcd-peer.sock:2380';

/** The embedded member's client URL for a state directory: `unix:///var/lib/calico/etcd.sock:2379`. */
export function embeddedClientUrl(stateDir: string): string {
  return `unix://${path.join(path.resolve(stateDir), EMBEDDED_CLIENT_SOCKET)}`;
}

export interface EmbeddedEtcdOptions {
  /**
   * Node state directory (0700, see node/state-dir.ts): the member keeps
   * `etcd/` (data), `etcd.log`, `etcd.pid` and its unix sockets here.
   */
  stateDir: string;
  log: Logger;
  binary?: string;
  /** How long the member may take to answer /health (first start fsyncs a fresh WAL). */
  readyTimeoutMs?: number;
  /**
   * --etcd-cluster: this member is one of a cluster (cluster.ts): peer and
   * client ports on its IP, besides the client socket.
   */
  cluster?: EmbeddedClusterOptions;
}

export interface EmbeddedClusterOptions {
  plan: EtcdClusterPlan;
  /**
   * The node's --etcd-* files: with them the member's TCP ports speak TLS
   * and demand client certificates from the CA (peers and clients alike);
   * the certificate is its server and peer certificate.
   */
  tls?: { ca: string; cert: string; key: string };
}

/** Beside the member's data: which cluster and member it was made for (see checkMemberData). */
export const CLUSTER_MARKER = 'etcd-cluster.json';

const MEMBER_NAME = 'calico-embedded';

/**
 * One local etcd member (Debian etcd-server), the single-host default: its
 * data lives under the node's state directory so pools and endpoints survive
 * a node restart. It listens on unix sockets in the state directory only, no
 * TCP port at all: the kernel's file permissions (a 0700 directory, 0600
 * sockets) keep every user but root out, with no certificates to make,
 * rotate or lose, and nothing a container or a remote host could reach.
 *
 * With `cluster` (--etcd-cluster) it is one member of a cluster instead: its
 * peer port (2380) and a client port (2379) on the host's address in the
 * list, TLS when the node has certificate files, and the client socket still
 * (calicoctl on the host finds the member there, as on a single host).
 */
export class EmbeddedEtcd {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  readonly dataDir: string;
  readonly logFile: string;
  readonly pidFile: string;
  /** unix:///<state dir>/etcd.sock:2379: what clients (calicoctl, the node) dial. */
  readonly clientUrl: string;
  private readonly stateDir: string;

  constructor(private readonly opts: EmbeddedEtcdOptions) {
    this.stateDir = path.resolve(opts.stateDir);
    this.dataDir = path.join(this.stateDir, 'etcd');
    this.logFile = path.join(this.stateDir, 'etcd.log');
    this.pidFile = path.join(this.stateDir, 'etcd.pid');
    this.clientUrl = embeddedClientUrl(this.stateDir);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const { log } = this.opts;
    const clientUrl = this.clientUrl;
    const binary = this.opts.binary ?? ETCD_BINARY;
    if (!fs.existsSync(binary)) {
      throw new Error(`starting embedded etcd: ${binary} not found (install the Debian package etcd-server, or point --etcd-endpoints at an etcd cluster)`);
    }
    fs.mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    await EmbeddedEtcd.stopLeftover(this.stateDir, log);
    // The sockets are made relative to etcd's working directory (the state
    // dir); a file left by a killed member would make etcd's bind fail.
    for (const f of [EMBEDDED_CLIENT_SOCKET, EMBEDDED_PEER_SOCKET]) fs.rmSync(path.join(this.stateDir, f), { force: true });
    const args = this.opts.cluster ? this.clusterArgs(this.opts.cluster) : this.singleArgs();
    const logFd = fs.openSync(this.logFile, 'a');
    try {
      this.child = spawn(binary, args, { cwd: this.stateDir, stdio: ['ignore', logFd, logFd] });
    } finally {
      fs.closeSync(logFd);
    }
    const child = this.child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('error', () => undefined);
    if (child.pid) fs.writeFileSync(this.pidFile, String(child.pid));
    try {
      await this.waitReady(child);
    } catch (e) {
      await this.stop();
      throw e;
    }
    const cluster = this.opts.cluster?.plan;
    if (cluster) {
      log.info({ clientUrl, peerUrl: cluster.peerUrl, token: cluster.token, dataDir: this.dataDir, pid: child.pid }, `started etcd member ${cluster.self.name} of cluster ${cluster.token}: peers on ${cluster.peerUrl}, clients on ${cluster.clientUrl} and ${clientUrl}`);
    } else {
      log.info({ clientUrl, dataDir: this.dataDir, pid: child.pid, logFile: this.logFile }, `started embedded etcd member on ${clientUrl} (data in ${this.dataDir})`);
    }
  }

  private get markerFile(): string {
    return path.join(this.stateDir, CLUSTER_MARKER);
  }

  private hasData(): boolean {
    return fs.existsSync(path.join(this.dataDir, 'member'));
  }

  private readMarker(): ClusterMarker | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.markerFile, 'utf8')) as ClusterMarker;
    } catch {
      return undefined;
    }
  }

  private singleArgs(): string[] {
    const marker = this.hasData() ? this.readMarker() : undefined;
    if (marker) {
      // etcd would come up as that member (from its data), with a peer socket nobody reaches.
      throw new Error(
        `starting embedded etcd: ${this.dataDir} holds the data of member ${marker.name} of cluster ${marker.token} ` +
          `(${marker.members.map((m) => `${m.name}=${m.ip}`).join(',')}): start the node with --etcd-cluster and that list`,
      );
    }
    const listenClient = `unix://${EMBEDDED_CLIENT_SOCKET}`;
    // A single member never talks to peers, but etcd insists on a peer
    // listener: a socket too (a loopback port would let any local user
    // speak raft and renew leases).
    const peerUrl = `unix://${EMBEDDED_PEER_SOCKET}`;
    return [
      '--name', MEMBER_NAME,
      '--data-dir', this.dataDir,
      '--listen-client-urls', listenClient,
      '--advertise-client-urls', listenClient,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `${MEMBER_NAME}=${peerUrl}`,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', MEMBER_NAME,
    ];
  }

  /**
   * A cluster member. etcd reads the --initial-* flags on the first start
   * only (no data yet); afterwards it restarts from its data, whatever they
   * say: so 'new' on the first start, 'existing' after (documenting what
   * etcd does anyway). The unix socket is plain even with TLS files (etcd
   * serves unix:// and http:// without TLS); the 0700 state dir guards it.
   */
  private clusterArgs(c: EmbeddedClusterOptions): string[] {
    const { plan, tls } = c;
    const check = checkMemberData(plan, this.hasData(), this.readMarker(), this.dataDir);
    if (!check.ok) throw new Error(`starting etcd member ${plan.self.name}: ${check.reason}`);
    if (check.warning) this.opts.log.warn(check.warning);
    if (check.firstStart) {
      // Before etcd makes its data: data without this file is the single-host member's.
      const marker: ClusterMarker = { token: plan.token, name: plan.self.name, members: plan.members };
      fs.writeFileSync(this.markerFile, JSON.stringify(marker) + '\n', { mode: 0o600 });
    }
    const tlsArgs = tls
      ? [
          '--cert-file', tls.cert, '--key-file', tls.key, '--trusted-ca-file', tls.ca, '--client-cert-auth',
          '--peer-cert-file', tls.cert, '--peer-key-file', tls.key, '--peer-trusted-ca-file', tls.ca, '--peer-client-cert-auth',
        ]
      : [];
    return [
      '--name', plan.self.name,
      '--data-dir', this.dataDir,
      '--listen-client-urls', `${plan.clientUrl},unix://${EMBEDDED_CLIENT_SOCKET}`,
      '--advertise-client-urls', plan.clientUrl,
      '--listen-peer-urls', plan.peerUrl,
      '--initial-advertise-peer-urls', plan.peerUrl,
      '--initial-cluster', plan.initialCluster,
      '--initial-cluster-state', check.firstStart ? 'new' : 'existing',
      '--initial-cluster-token', plan.token,
      ...tlsArgs,
    ];
  }

  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 30000);
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`starting embedded etcd on ${this.clientUrl}: etcd exited (${child.exitCode ?? child.signalCode}): ${this.logTail()}`);
      }
      const p = await probeEtcd(this.clientUrl, 1000);
      // A cluster member is healthy only with a quorum, i.e. once enough
      // other hosts started theirs: the datastore component waits for that.
      if (p.kind === 'etcd' && (this.opts.cluster || (await healthy(this.clientUrl)))) return;
      if (Date.now() > deadline) {
        throw new Error(`starting embedded etcd on ${this.clientUrl}: not healthy after ${this.opts.readyTimeoutMs ?? 30000} ms: ${this.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Idempotent: SIGTERM, then SIGKILL if etcd has not exited after 2 s (the node's stop is bounded). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await this.exited;
      clearTimeout(timer);
      this.opts.log.info({ clientUrl: this.clientUrl }, `stopped embedded etcd member on ${this.clientUrl}`);
    }
    this.child = undefined;
    fs.rmSync(this.pidFile, { force: true });
    // Gone sockets tell calicoctl there is no member here (it falls back to 127.0.0.1:2379).
    for (const f of [EMBEDDED_CLIENT_SOCKET, EMBEDDED_PEER_SOCKET]) fs.rmSync(path.join(this.stateDir, f), { force: true });
  }

  /** Kills the member at once (the node's stop bound ran out). */
  kill(): void {
    this.child?.kill('SIGKILL');
  }

  /**
   * A node killed with SIGKILL leaves its etcd child running on this state
   * dir's data: end it, so the member always belongs to a live node (and is
   * stopped with it). Returns the pid it stopped, if any.
   */
  static async stopLeftover(stateDir: string, log: Logger): Promise<number | undefined> {
    stateDir = path.resolve(stateDir);
    const pidFile = path.join(stateDir, 'etcd.pid');
    let pid = 0;
    try {
      pid = Number(fs.readFileSync(pidFile, 'utf8'));
    } catch {
      return undefined;
    }
    let stopped: number | undefined;
    if (pid > 0 && commandLineOf(pid).includes(path.join(stateDir, 'etcd'))) {
      log.warn({ pid }, `stopping leftover embedded etcd (pid ${pid}) from an earlier node run`);
      try {
        process.kill(pid, 'SIGKILL');
        stopped = pid;
      } catch {
        /* already gone */
      }
      // Its client port must be free before a new member (or the probe) looks at it.
      for (let i = 0; i < 100 && commandLineOf(pid); i++) await new Promise((r) => setTimeout(r, 50));
    }
    fs.rmSync(pidFile, { force: true });
    return stopped;
  }

  private logTail(): string {
    try {
      const lines = fs.readFileSync(this.logFile, 'utf8').trim().split('\n');
      return lines.slice(-3).join(' | ') || '(no output)';
    } catch {
      return '(no log)';
    }
  }
}

function commandLineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

async function healthy(clientUrl: string): Promise<boolean> {
  try {
    const body = JSON.parse(await etcdGet(clientUrl, '/health', 1000)) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
