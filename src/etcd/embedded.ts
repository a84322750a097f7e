import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { probeEtcd } from './probe';

export const ETCD_BINARY = '/usr/bin/etcd';

export interface EmbeddedEtcdOptions {
  /** Client URL to listen on (loopback http), e.g. http://127.0.0.1:2379. */
  clientUrl: string;
  /** Node state directory; the member keeps `etcd/` (data), `etcd.log` and `etcd.pid` here. */
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
 * a node restart. Only ever started on a loopback client URL.
 */
export class EmbeddedEtcd {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  readonly dataDir: string;
  readonly logFile: string;
  readonly pidFile: string;

  constructor(private readonly opts: EmbeddedEtcdOptions) {
    this.dataDir = path.join(opts.stateDir, 'etcd');
    this.logFile = path.join(opts.stateDir, 'etcd.log');
    this.pidFile = path.join(opts.stateDir, 'etcd.pid');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const { clientUrl, log } = this.opts;
    const binary = this.opts.binary ?? ETCD_BINARY;
    if (!fs.existsSync(binary)) {
      throw new Error(`starting embedded etcd: ${binary} not found (install the Debian package etcd-server, or point --etcd-endpoints at an etcd cluster)`);
    }
    fs.mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    await EmbeddedEtcd.stopLeftover(this.opts.stateDir, log);
    // A single member never talks to peers, but etcd insists on a peer
    // listener: take any free loopback port (the data dir does not pin it).
    const peerUrl = `http://127.0.0.1:${await freeLoopbackPort()}`;
    const args = [
      '--name', MEMBER_NAME,
      '--data-dir', this.dataDir,
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `${MEMBER_NAME}=${peerUrl}`,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', MEMBER_NAME,
    ];
    const logFd = fs.openSync(this.logFile, 'a');
    try {
      this.child = spawn(binary, args, { stdio: ['ignore', logFd, logFd] });
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
        throw new Error(`starting embedded etcd on ${this.opts.clientUrl}: etcd exited (${child.exitCode ?? child.signalCode}): ${this.logTail()}`);
      }
      const p = await probeEtcd(this.opts.clientUrl, 1000);
      if (p.kind === 'etcd' && (await healthy(this.opts.clientUrl))) return;
      if (Date.now() > deadline) {
        throw new Error(`starting embedded etcd on ${this.opts.clientUrl}: not healthy after ${this.opts.readyTimeoutMs ?? 30000} ms: ${this.logTail()}`);
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
      this.opts.log.info({ clientUrl: this.opts.clientUrl }, `stopped embedded etcd member on ${this.opts.clientUrl}`);
    }
    this.child = undefined;
    fs.rmSync(this.pidFile, { force: true });
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
    const res = await fetch(new URL('/health', clientUrl), { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { health?: string };
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
