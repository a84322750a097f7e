import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { etcdGet, probeEtcd } from './probe';

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
}

const MEMBER_NAME = 'calico-embedded';

/**
 * One local etcd member (Debian etcd-server), the single-host default: its
 * data lives under the node's state directory so pools and endpoints survive
 * a node restart. It listens on unix sockets in the state directory only, no
 * TCP port at all: the kernel's file permissions (a 0700 directory, 0600
 * sockets) keep every user but root out, with no certificates to make,
 * rotate or lose, and nothing a container or a remote host could reach.
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
    const listenClient = `unix://${EMBEDDED_CLIENT_SOCKET}`;
    // A single member never talks to peers, but etcd insists on a peer
    // listener: a socket too (a loopback port would let any local user
    // speak raft and renew leases).
    const peerUrl = `unix://${EMBEDDED_PEER_SOCKET}`;
    for (const f of [EMBEDDED_CLIENT_SOCKET, EMBEDDED_PEER_SOCKET]) fs.rmSync(path.join(this.stateDir, f), { force: true });
    const args = [
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
    log.info({ clientUrl, dataDir: this.dataDir, pid: child.pid, logFile: this.logFile }, `started embedded etcd member on ${clientUrl} (data in ${this.dataDir})`);
  }

  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 30000);
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`starting embedded etcd on ${this.clientUrl}: etcd exited (${child.exitCode ?? child.signalCode}): ${this.logTail()}`);
      }
      const p = await probeEtcd(this.clientUrl, 1000);
      if (p.kind === 'etcd' && (await healthy(this.clientUrl))) return;
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
