// A Calico "host" for the container-networking tests: a network namespace
// holding its own etcd, dockerd and node process (plugin, proxy,
// reconciler), so its veths, routes and addresses meet nobody else's.
// The proxy and dockerd listen on unix sockets, reachable from the test
// process; a "LAN" namespace can be linked to it (the seed's first step).
import fs from 'node:fs';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import {
  Netns, PrivateDockerd, ensureTestImage, makeRunDir, onTeardown, removeTree, run, RunOptions, RunResult, uniqueName, waitFor, TEST_IMAGE,
  CALICOCTL_MAIN,
} from '../harness';
import type { LabNodeConfig } from './calico-node-main';
import type { Allocation } from '../../src/ipam/types';
import type { Endpoint } from '../../src/datastore';

export interface SpawnedNode {
  child: ChildProcess;
  exited: Promise<number | null>;
  log(): string;
  /** Resolves once the node printed its DOCKER_HOST hint (serving) or exited. */
  ready(): Promise<unknown>;
}

export interface LabOptions {
  pools: string[];
  gcGraceMs?: number;
  sweepIntervalMs?: number;
  /**
   * dockerd as a stock host runs it: its default bridge and iptables on, so
   * FORWARD policy DROP (default true; a lab without it once hid a failure).
   * false: --bridge=none --iptables=false.
   */
  bridge?: boolean;
  logLevel?: string;
}

const NODE_MAIN = path.join(__dirname, 'calico-node-main.js');
const QUERY_MAIN = path.join(__dirname, 'calico-lab-query.js');
const ETCD_URL = 'http://127.0.0.1:2379';
export const LAB_HOST_IP = '198.18.0.1';

export class CalicoLab {
  node?: ChildProcess;
  readonly proxySocket: string;
  readonly hostname = 'labhost';
  readonly pluginName: string;
  readonly image = TEST_IMAGE;

  private constructor(
    readonly ns: Netns,
    readonly dir: string,
    readonly dockerd: PrivateDockerd,
    private readonly opts: LabOptions,
  ) {
    this.proxySocket = path.join(dir, 'proxy.sock');
    this.pluginName = uniqueName('calt');
  }

  get proxyHost(): string {
    return `unix://${this.proxySocket}`;
  }

  static async start(opts: LabOptions): Promise<CalicoLab> {
    const ns = await Netns.create('cdtl');
    // Proxy ARP answers for 169.254.1.1 only when the host has a route to it.
    // (A veth pair inside the namespace: this kernel has no dummy driver.)
    await ns.ok('ip', ['link', 'add', 'lab0', 'type', 'veth', 'peer', 'name', 'lab0p']);
    await ns.ok('ip', ['link', 'set', 'lab0p', 'up']);
    await ns.ok('ip', ['link', 'set', 'lab0', 'up']);
    // The host's own address (what `calicoctl node --ip` names): the source of its pings.
    await ns.ok('ip', ['addr', 'add', `${LAB_HOST_IP}/32`, 'dev', 'lab0']);
    await ns.ok('ip', ['route', 'add', 'default', 'dev', 'lab0']);
    const dir = await makeRunDir('calico-lab');
    onTeardown(`removing ${dir}`, () => removeTree(dir));
    await startEtcd(ns, dir);
    const dockerd = await PrivateDockerd.start({
      netns: ns.name,
      ...(opts.bridge !== false ? { bridge: { name: 'docker0', cidr: '172.31.0.1/24' }, iptables: true } : {}),
    });
    await ensureTestImage(dockerd);
    if (opts.bridge !== false) {
      // What dockerd does on a host where it had to turn forwarding on (a
      // fresh namespace here may already forward, and then it leaves the policy).
      await ns.ok('iptables', ['-w', '-P', 'FORWARD', 'DROP']);
      await ns.ok('ip6tables', ['-w', '-P', 'FORWARD', 'DROP']);
    }
    const lab = new CalicoLab(ns, dir, dockerd, opts);
    for (const p of opts.pools) await lab.calicoctl(['pool', 'add', p], true);
    await lab.startNode();
    // A node killed with SIGKILL leaves its BIRD running (on purpose: see docs/bgp.md); it goes at teardown.
    onTeardown('BIRD of the lab node', () => killBirdOf(dir));
    onTeardown('calico lab node', () => lab.stopNode());
    return lab;
  }

  /** calicoctl inside the host namespace, against the lab's etcd. */
  async calicoctl(args: string[], ok = false): Promise<RunResult> {
    const r = await this.ns.exec(process.execPath, [CALICOCTL_MAIN, '--etcd-endpoints', ETCD_URL, ...args], { timeoutMs: 30000 });
    if (ok && r.code !== 0) throw new Error(`calicoctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r;
  }

  async startNode(): Promise<void> {
    const cfg: LabNodeConfig = {
      etcd: [ETCD_URL],
      dockerSocket: this.dockerd.socket,
      listen: this.proxyHost,
      hostname: this.hostname,
      hostIp: LAB_HOST_IP,
      pluginName: this.pluginName,
      stateDir: this.dir,
      sweepIntervalMs: this.opts.sweepIntervalMs ?? 2000,
      gcGraceMs: this.opts.gcGraceMs ?? 3000,
      logFile: path.join(this.dir, 'node.log'),
      logLevel: this.opts.logLevel ?? process.env.CALICO_LAB_LOG ?? 'info',
    };
    fs.rmSync(this.proxySocket, { force: true });
    const child = spawn('nsenter', [`--net=${this.ns.path}`, process.execPath, NODE_MAIN, JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.node = child;
    fs.writeFileSync(path.join(this.dir, 'node.pid'), String(child.pid));
    let out = '';
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`lab node did not start in 60 s: ${err}`)), 60000);
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('READY')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`lab node exited ${code}: ${err}${this.logTail()}`));
      });
    });
  }

  /**
   * The real `calicoctl node` in the host namespace (what operators run), in
   * place of the lab's node process: same host name, plugin name and proxy
   * socket. Stop the lab's node first.
   */
  spawnCalicoctlNode(opts: { stateDir?: string; name?: string; pluginName?: string; listen?: string; extra?: string[] } = {}): SpawnedNode {
    const stateDir = opts.stateDir ?? this.dir;
    const logFile = path.join(stateDir, 'calicoctl-node.log');
    fs.mkdirSync(stateDir, { recursive: true });
    const listen = opts.listen ?? this.proxyHost;
    if (listen === this.proxyHost) fs.rmSync(this.proxySocket, { force: true });
    const args = [
      CALICOCTL_MAIN, 'node', '--hostname', opts.name ?? this.hostname, '--ip', LAB_HOST_IP, '--state-dir', stateDir,
      '--etcd-endpoints', ETCD_URL, '--no-embedded-etcd', '--plugin-name', opts.pluginName ?? this.pluginName,
      '--listen', listen, '--docker', `unix://${this.dockerd.socket}`, ...(opts.extra ?? []),
    ];
    const log = fs.openSync(logFile, 'a');
    const child = spawn('nsenter', [`--net=${this.ns.path}`, process.execPath, ...args], { stdio: ['ignore', 'pipe', log] });
    fs.closeSync(log);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    onTeardown('BIRD of calicoctl node', () => killBirdOf(stateDir));
    onTeardown('calicoctl node', async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    return {
      child,
      exited,
      log: () => fs.readFileSync(logFile, 'utf8'),
      ready: () => waitFor('calicoctl node to serve', async () => out.includes('DOCKER_HOST') || child.exitCode !== null, 60000, 100),
    };
  }

  /** The lab host's filter table and ipsets, for a failure message (what policy had programmed). */
  async kernelState(): Promise<string> {
    const ipt = await this.ns.exec('iptables-save', ['-t', 'filter', '-c']);
    const sets = await this.ns.exec('ipset', ['list']);
    return `--- iptables-save -t filter -c\n${ipt.stdout}\n--- ipset list\n${sets.stdout}\n--- node log\n${this.logTail(40)}`;
  }

  logTail(n = 20): string {
    try {
      return fs.readFileSync(path.join(this.dir, 'node.log'), 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '';
    }
  }

  /** kill -9, as a crash or the OOM killer would. */
  async killNode(): Promise<void> {
    const c = this.node;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await gone;
  }

  async stopNode(): Promise<void> {
    const c = this.node;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 10000);
    await gone;
    clearTimeout(t);
  }

  /** The docker CLI through the proxy. */
  docker(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.dockerd.docker(args, { timeoutMs: 60000, ...opts, host: this.proxyHost });
  }

  /** The docker CLI on dockerd's own socket (bypassing Calico). */
  direct(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.dockerd.docker(args, { timeoutMs: 60000, ...opts });
  }

  async dockerOk(args: string[], opts: RunOptions = {}): Promise<string> {
    const r = await this.docker(args, opts);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  async state(): Promise<{ allocations: Allocation[]; endpoints: Endpoint[] }> {
    return JSON.parse(await this.query('state'));
  }

  /** Allocates (fill) or frees (release) n test addresses straight in IPAM. */
  async query(mode: 'state' | 'fill' | 'release', n = 0): Promise<string> {
    const r = await this.ns.exec(process.execPath, [QUERY_MAIN, ETCD_URL, this.hostname, mode, String(n)], { timeoutMs: 60000 });
    if (r.code !== 0) throw new Error(`${mode} on the lab's etcd: ${r.stderr}`);
    return r.stdout;
  }

  /** Stops the lab's etcd (SIGSTOP: it accepts connections but never answers) or resumes it. */
  pauseEtcd(paused: boolean): void {
    process.kill(this.etcdPid, paused ? 'SIGSTOP' : 'SIGCONT');
  }

  private get etcdPid(): number {
    return Number(fs.readFileSync(path.join(this.dir, 'etcd.pid'), 'utf8'));
  }

  /** cali* (and not yet moved ctmp*) links in the host namespace. */
  async workloadLinks(): Promise<string[]> {
    const r = await this.ns.ok('ip', ['-o', 'link', 'show']);
    return r.stdout
      .split('\n')
      .map((l) => l.split(':')[1]?.trim().split('@')[0])
      .filter((n): n is string => !!n && (n.startsWith('cali') || n.startsWith('ctmp')));
  }

  /** Waits until nothing is allocated, recorded or plumbed (the reconciler's sweep has run). */
  async waitClean(timeoutMs = 30000): Promise<void> {
    let last = '';
    try {
      await waitFor('lab to be clean', async () => {
        const s = await this.state();
        const links = await this.workloadLinks();
        last = `allocations ${JSON.stringify(s.allocations.map((a) => `${a.address} ${a.handle} ${JSON.stringify(a.attrs)}`))}, endpoints ${s.endpoints.length}, links ${links.join(',')}`;
        return s.allocations.length === 0 && s.endpoints.length === 0 && links.length === 0;
      }, timeoutMs, 500);
    } catch (e) {
      throw new Error(`${(e as Error).message}; still there: ${last}`);
    }
  }
}

/** SIGKILL to the BIRD a node with this state dir started, if it still runs. */
function killBirdOf(stateDir: string): void {
  try {
    const pid = Number(fs.readFileSync(path.join(stateDir, 'bird', 'bird.pid'), 'utf8').trim());
    if (pid > 1 && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(stateDir)) process.kill(pid, 'SIGKILL');
  } catch {
    /* none, or gone */
  }
}

async function startEtcd(ns: Netns, dir: string): Promise<void> {
  const data = path.join(dir, 'etcd');
  fs.mkdirSync(data);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', data]);
  const log = fs.openSync(path.join(dir, 'etcd.log'), 'a');
  const child = spawn(
    'nsenter',
    [`--net=${ns.path}`, '/usr/bin/etcd', '--data-dir', data, '--listen-client-urls', ETCD_URL, '--advertise-client-urls', ETCD_URL,
      '--listen-peer-urls', 'http://127.0.0.1:2380', '--log-level', 'warn', '--logger', 'zap'],
    { stdio: ['ignore', log, log] },
  );
  fs.closeSync(log);
  fs.writeFileSync(path.join(dir, 'etcd.pid'), String(child.pid));
  onTeardown('lab etcd', async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGKILL');
      await gone;
    }
  });
  await waitFor('lab etcd', async () => (await ns.exec('etcdctl', ['--endpoints', ETCD_URL, 'endpoint', 'health'])).code === 0, 30000, 200);
}
