import fs from 'node:fs';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import http from 'node:http';
import { makeRunDir, onTeardown, removeTree } from './teardown';
import { run, RunOptions, RunResult, runOk, sleep } from './exec';

export interface DockerdOptions {
  /**
   * Run dockerd inside this network namespace (a "host" made by the netns
   * harness). nsenter, not `ip netns exec`: the latter remounts /sys and
   * dockerd then fails with "Devices cgroup isn't mounted".
   */
  netns?: string;
  /**
   * Bridge for Docker's default network. Default: none, so private dockerds
   * never fight over docker0. Give { name, cidr } for a private bridge.
   */
  bridge?: { name: string; cidr: string };
  /** Let dockerd write iptables rules (default false: tests own the firewall). */
  iptables?: boolean;
  extraArgs?: string[];
}

let bridgeSeq = 0;

/**
 * A dockerd of the test's own: own --data-root, --exec-root, socket and pid
 * file under a harness directory, so it never touches the machine's dockerd,
 * and is stopped and removed at teardown even when the test failed.
 */
export class PrivateDockerd {
  private child?: ChildProcess;
  readonly socket: string;
  readonly pidFile: string;
  readonly logFile: string;

  private constructor(readonly dir: string, readonly opts: DockerdOptions) {
    this.socket = path.join(dir, 'docker.sock');
    this.pidFile = path.join(dir, 'dockerd.pid');
    this.logFile = path.join(dir, 'dockerd.log');
  }

  /** `unix:///...` address for DOCKER_HOST / -H. */
  get host(): string {
    return `unix://${this.socket}`;
  }

  static async start(opts: DockerdOptions = {}): Promise<PrivateDockerd> {
    const dir = await makeRunDir('dockerd');
    const d = new PrivateDockerd(dir, opts);
    onTeardown(`dockerd in ${dir}`, () => d.destroy());
    if (opts.bridge) await d.makeBridge(opts.bridge);
    await d.launch();
    return d;
  }

  /** Convenience: a private bridge name + /24 that no other private dockerd uses. */
  static uniqueBridge(): { name: string; cidr: string } {
    const n = (process.pid * 7 + bridgeSeq++) % 250;
    return { name: `cdtbr${n}`, cidr: `172.30.${n}.1/24` };
  }

  private async makeBridge(b: { name: string; cidr: string }): Promise<void> {
    const ns = this.opts.netns ? ['-n', this.opts.netns] : [];
    await run('ip', [...ns, 'link', 'del', b.name]);
    await runOk('ip', [...ns, 'link', 'add', 'name', b.name, 'type', 'bridge']);
    await runOk('ip', [...ns, 'addr', 'add', b.cidr, 'dev', b.name]);
    await runOk('ip', [...ns, 'link', 'set', b.name, 'up']);
    onTeardown(`bridge ${b.name}`, async () => {
      await run('ip', [...ns, 'link', 'del', b.name]);
    });
  }

  private args(): string[] {
    const o = this.opts;
    return [
      '--data-root', path.join(this.dir, 'data'),
      '--exec-root', path.join(this.dir, 'exec'),
      '-H', this.host,
      '--pidfile', this.pidFile,
      o.bridge ? `--bridge=${o.bridge.name}` : '--bridge=none',
      `--iptables=${o.iptables ? 'true' : 'false'}`,
      '--ip-masq=false',
      // Private dockerds must not share a config file with the machine's one.
      '--config-file', this.writeConfig(),
      ...(o.extraArgs ?? []),
    ];
  }

  private writeConfig(): string {
    const f = path.join(this.dir, 'daemon.json');
    fs.writeFileSync(f, '{}\n');
    return f;
  }

  private async launch(): Promise<void> {
    const log = fs.openSync(this.logFile, 'a');
    const cmd = this.opts.netns ? 'nsenter' : 'dockerd';
    const args = this.opts.netns
      ? [`--net=/var/run/netns/${this.opts.netns}`, 'dockerd', ...this.args()]
      : this.args();
    this.child = spawn(cmd, args, { stdio: ['ignore', log, log], detached: false });
    fs.closeSync(log);
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) break;
      if (await this.ping()) return;
      await sleep(50);
    }
    const tail = fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-15).join('\n');
    throw new Error(`private dockerd in ${this.dir} did not come up:\n${tail}`);
  }

  /** GET /_ping on the socket. */
  ping(): Promise<boolean> {
    return new Promise((resolve) => {
      const req = http.request({ socketPath: this.socket, path: '/_ping', method: 'GET', timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => {
        req.destroy();
        resolve(false);
      });
      req.end();
    });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Stops dockerd (SIGTERM, then SIGKILL after 20 s); containers stop with it. */
  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 20000);
    await exited;
    clearTimeout(t);
  }

  /** A daemon restart, as `systemctl restart docker` would do: same dirs, same socket. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  private async destroy(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      // Remove containers first so their netns/veths go away with them.
      await run('docker', ['-H', this.host, 'rm', '-f', ...(await this.containerIds())], { timeoutMs: 30000 });
      await this.stop();
    }
    await removeTree(this.dir);
  }

  private async containerIds(): Promise<string[]> {
    const r = await run('docker', ['-H', this.host, 'ps', '-aq'], { timeoutMs: 10000 });
    return r.stdout.split('\n').filter(Boolean);
  }

  /** Runs the real docker CLI against this daemon (or against `host` if given). */
  docker(args: string[], opts: RunOptions & { host?: string } = {}): Promise<RunResult> {
    const env = { ...(opts.env ?? process.env), DOCKER_HOST: opts.host ?? this.host };
    delete (env as Record<string, string | undefined>).DOCKER_CONTEXT;
    return run('docker', args, { ...opts, env });
  }
}
