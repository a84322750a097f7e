// The blog post's lab on one machine: three Docker hosts (trinity10/20/30)
// and a router on one "LAN" bridge, a LAN client behind the router, an etcd
// cluster of three members (one per host, as in the post), and on each host
// its own dockerd (iptables on, as a stock host: FORWARD policy DROP) and
// its own real `calicoctl node`. The router runs BIRD as a route reflector
// (AS 64511, the three hosts as clients, client-to-client reflection),
// standing in for the post's Mikrotik; it learns nothing until the hosts are
// told to peer with it (`calicoctl bgppeer rr add <router>`).
//
// etcd runs as an operator would run it between hosts: TLS with client
// certificates on the client and the peer side (one throw-away CA, made with
// openssl); each node is started with --etcd-endpoints https://... and the
// --etcd-*-file flags, and each host's shell has ETCD_ENDPOINTS and the
// ETCD_*_FILE variables (and etcdctl's) exported.
//
// Addresses are test-only ranges that never leave the machine: the LAN is
// 198.18.0.0/24 (router .1, trinityN .N), the client network behind the
// router 198.18.1.0/24. A lab may put some hosts on a second LAN,
// 198.18.2.0/24 (router .1, trinityN .N), on a bridge of its own: those
// reach the others only through the router, which has no route to any pool
// (it learns none unless the hosts peer with it). Everything (namespaces, daemons, BIRDs, mounts) is
// removed at teardown, also when a test failed.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import {
  CALICOCTL_MAIN, Netns, PrivateDockerd, RunOptions, RunResult, TEST_IMAGE, TestCerts, calicoctlTlsFlags, ensureTestImage, etcdTlsFlags, etcdctlTlsEnv,
  makeRunDir, makeTestCerts, onTeardown, removeTree, run, runOk, uniqueName, vethLink, waitFor,
} from '../harness';

export const LAN_PREFIX = '198.18.0';
export const ROUTER_IP = '198.18.0.1';
/** The second LAN (TrinityLabOptions.secondLan) and the router's address on it. */
export const LAN2_PREFIX = '198.18.2';
export const ROUTER2_IP = '198.18.2.1';
export const CLIENT_NET_ROUTER = '198.18.1.1';
export const CLIENT_IP = '198.18.1.2';
export const ROUTER_AS = '64511';
export const HOST_NAMES = ['trinity10', 'trinity20', 'trinity30'] as const;
/** Each host's own etcd member, as the node and the host's shell reach it. */
export const LOCAL_ETCD = 'https://127.0.0.1:2379';
export type HostName = (typeof HOST_NAMES)[number];

/** trinity10 -> 198.18.0.10 (on the second LAN: 198.18.2.10) */
export function lanIp(name: HostName, secondLan: readonly HostName[] = []): string {
  return `${secondLan.includes(name) ? LAN2_PREFIX : LAN_PREFIX}.${name.slice('trinity'.length)}`;
}

export interface TrinityLabOptions {
  /** Hosts on the second LAN (198.18.2.0/24), reached from the first only through the router. */
  secondLan?: HostName[];
}

/** SIGKILL to the process a pid file names, if its command line still mentions `mark` (pids are reused). */
function killPidFile(file: string, mark: string): void {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    if (pid > 1 && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(mark)) process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** A process of the lab started with nsenter --net into a namespace. */
function spawnIn(ns: Netns, cmd: string, args: string[], logFile: string): ChildProcess {
  const fd = fs.openSync(logFile, 'a');
  try {
    return spawn('nsenter', [`--net=${ns.path}`, cmd, ...args], { stdio: ['ignore', fd, fd] });
  } finally {
    fs.closeSync(fd);
  }
}

async function killChild(c: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill(signal);
  await gone;
}

export class TrinityHost {
  node?: ChildProcess;
  nodeExited?: Promise<number | null>;
  private nodeOut = '';
  readonly stateDir: string;
  readonly proxySocket: string;
  readonly pluginName: string;
  readonly ip: string;
  /** The router's address on this host's LAN (its default route). */
  readonly gateway: string;

  constructor(
    readonly name: HostName,
    readonly ns: Netns,
    readonly dir: string,
    readonly dockerd: PrivateDockerd,
    /** The lab's CA and the etcd server and client certificates. */
    readonly certs: TestCerts,
    secondLan: readonly HostName[] = [],
  ) {
    this.ip = lanIp(name, secondLan);
    this.gateway = secondLan.includes(name) ? ROUTER2_IP : ROUTER_IP;
    this.stateDir = path.join(dir, 'state');
    this.proxySocket = path.join(dir, 'proxy.sock');
    this.pluginName = uniqueName(`cal${name.slice(-2)}`);
  }

  /** DOCKER_HOST of this host's Calico proxy (the post's `export DOCKER_HOST=localhost:2377`). */
  get dockerHost(): string {
    return `unix://${this.proxySocket}`;
  }

  get nodeLogFile(): string {
    return path.join(this.dir, 'calicoctl-node.log');
  }

  /** The etcd settings this host's shell has exported (calicoctl's and etcdctl's). */
  etcdEnv(): NodeJS.ProcessEnv {
    return {
      ETCD_ENDPOINTS: LOCAL_ETCD,
      ETCD_CA_CERT_FILE: this.certs.ca,
      ETCD_CERT_FILE: this.certs.clientCert,
      ETCD_KEY_FILE: this.certs.clientKey,
      ETCDCTL_ENDPOINTS: LOCAL_ETCD,
      ...etcdctlTlsEnv(this.certs),
    };
  }

  /** A command on this host (its network namespace), in a shell with the etcd settings exported. */
  exec(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run('nsenter', [`--net=${this.ns.path}`, cmd, ...args], { ...opts, env: { ...process.env, ...this.etcdEnv(), ...opts.env } });
  }

  /** argv that runs cmd on this host: its network namespace, and its host name (a UTS namespace of its own). */
  onHost(cmd: string, args: string[]): string[] {
    return [`--net=${this.ns.path}`, 'unshare', '--uts', '--', 'sh', '-c', 'hostname "$0" && exec "$@"', this.name, cmd, ...args];
  }

  /**
   * calicoctl on this host, as typed there: its host name is trinityN (what
   * `profile member add` and `node bgppeer` go by), etcd is the host's own
   * member over TLS (ETCD_ENDPOINTS and the ETCD_*_FILE variables exported),
   * and DOCKER_HOST is the host's proxy (the post exported it in that shell).
   */
  calicoctl(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    const env: NodeJS.ProcessEnv = { ...process.env, ...this.etcdEnv(), DOCKER_HOST: this.dockerHost };
    delete env.ETCD_AUTHORITY;
    return run('nsenter', this.onHost(process.execPath, [CALICOCTL_MAIN, ...args]), { timeoutMs: 30000, env, ...opts });
  }

  async calicoctlOk(args: string[], opts: RunOptions = {}): Promise<string> {
    const r = await this.calicoctl(args, opts);
    if (r.code !== 0) throw new Error(`[${this.name}] calicoctl ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** The docker CLI on this host with DOCKER_HOST = its Calico proxy. */
  docker(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.dockerd.docker(args, { timeoutMs: 60000, ...opts, host: this.dockerHost });
  }

  async dockerOk(args: string[], opts: RunOptions = {}): Promise<string> {
    const r = await this.docker(args, opts);
    if (r.code !== 0) throw new Error(`[${this.name}] docker ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  /** The docker CLI on dockerd's own socket (no Calico: works while the node is down). */
  direct(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.dockerd.docker(args, { timeoutMs: 60000, ...opts });
  }

  /** birdc on this host's BIRD (the node's socket under its state dir). */
  birdc(args: string[]): Promise<RunResult> {
    return run('birdc', ['-s', path.join(this.stateDir, 'bird', 'bird.ctl'), ...args], { timeoutMs: 5000 });
  }

  /**
   * The real `calicoctl node --ip=<LAN address> --hostname trinityN` in this
   * host's namespace, foreground; resolves once it serves. Extra flags: the
   * lab's (its own plugin name, proxy socket, dockerd), and etcd's: the
   * host's member over TLS, with the client certificate.
   */
  async startNode(extra: string[] = []): Promise<void> {
    fs.mkdirSync(this.stateDir, { recursive: true });
    fs.rmSync(this.proxySocket, { force: true });
    const args = [
      CALICOCTL_MAIN, 'node', `--ip=${this.ip}`, '--hostname', this.name, '--state-dir', this.stateDir, '--no-embedded-etcd',
      '--etcd-endpoints', LOCAL_ETCD, ...calicoctlTlsFlags(this.certs),
      '--plugin-name', this.pluginName, '--listen', this.dockerHost, '--docker', `unix://${this.dockerd.socket}`,
      '--log-level', process.env.TRINITY_LOG_LEVEL ?? 'info', ...extra,
    ];
    const fd = fs.openSync(this.nodeLogFile, 'a');
    const env = { ...process.env };
    for (const k of ['ETCD_ENDPOINTS', 'ETCD_AUTHORITY', 'ETCD_CA_CERT_FILE', 'ETCD_CERT_FILE', 'ETCD_KEY_FILE']) delete env[k];
    const child = spawn('nsenter', this.onHost(process.execPath, args), { stdio: ['ignore', 'pipe', fd], env });
    fs.closeSync(fd);
    this.node = child;
    this.nodeOut = '';
    child.stdout!.on('data', (b: Buffer) => (this.nodeOut += b.toString()));
    this.nodeExited = new Promise((r) => child.once('exit', (code) => r(code)));
    await waitFor(`calicoctl node on ${this.name} to serve`, async () => this.nodeOut.includes('DOCKER_HOST') || child.exitCode !== null, 60000, 100);
    if (child.exitCode !== null) throw new Error(`calicoctl node on ${this.name} exited ${child.exitCode}:\n${this.nodeLog(20)}`);
  }

  nodeLog(lines = 30): string {
    try {
      return fs.readFileSync(this.nodeLogFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** kill -9 of the node process alone (its BIRD, a child, lives on as an orphan, as in a crash). */
  async killNode(): Promise<void> {
    await killChild(this.node, 'SIGKILL');
  }

  /** SIGTERM: the node's own bounded stop (BIRD stopped gracefully). */
  async stopNode(): Promise<void> {
    const c = this.node;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const t = setTimeout(() => c.kill('SIGKILL'), 10000);
    await killChild(c, 'SIGTERM');
    clearTimeout(t);
  }

  /** Every BIRD this host's nodes started (orphans of killed nodes too). */
  killBird(): void {
    killPidFile(path.join(this.stateDir, 'bird', 'bird.pid'), this.stateDir);
  }

  /** The host's LAN link down or up: the host is "taken away" (no TCP close, its peers only notice by hold time). */
  async lanLink(up: boolean): Promise<void> {
    await this.exec('ip', ['link', 'set', 'eth0', up ? 'up' : 'down']);
    if (up) await this.exec('ip', ['route', 'replace', 'default', 'via', this.gateway, 'dev', 'eth0']);
  }

  /** The container's IPv4 address on the calico network. */
  async containerIp(name: string): Promise<string> {
    const out = await this.dockerOk(['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    const m = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out);
    if (!m) throw new Error(`[${this.name}] no IPv4 address on ${name}'s eth0: ${out}`);
    return m[1]!;
  }

  /** The network namespace of a running container (to probe from it without docker exec's own cost). */
  async containerNetns(name: string): Promise<string> {
    const pid = (await this.direct(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim();
    if (!/^[1-9]\d*$/.test(pid)) throw new Error(`[${this.name}] ${name} is not running (pid ${pid})`);
    return `/proc/${pid}/ns/net`;
  }

  /** One ping from a container (busybox ping, 1 s wait). */
  async pingFrom(container: string, ip: string, waitS = 1): Promise<boolean> {
    const r = await this.direct(['exec', container, 'ping', '-c', '1', '-W', String(waitS), ip], { timeoutMs: (waitS + 5) * 1000 });
    return r.code === 0;
  }
}

export interface TrinityLab {
  dir: string;
  hosts: Record<HostName, TrinityHost>;
  router: Netns;
  client: Netns;
  /** The switch namespace holding the LAN bridge. */
  lan: Netns;
  image: string;
  /** birdc on the route reflector's BIRD. */
  routerBirdc(args: string[]): Promise<RunResult>;
  /** One ping from the LAN client. */
  clientPing(ip: string, waitS?: number): Promise<boolean>;
}

/** BIRD on the router: AS 64511, every host an rr client, BGP routes into its kernel. */
export function routerBirdConfig(hosts: readonly HostName[], secondLan: readonly HostName[] = []): string {
  return [
    `router id ${ROUTER_IP};`,
    'log stderr all;',
    'protocol device { scan time 10; }',
    'protocol direct { ipv4; interface "*"; }',
    'protocol kernel {',
    '  scan time 10;',
    '  ipv4 { import none; export where source = RTS_BGP; };',
    '}',
    'template bgp rrclient {',
    `  local ${ROUTER_IP} as ${ROUTER_AS};`,
    '  rr client;',
    '  direct;',
    '  hold time 9;',
    '  keepalive time 3;',
    '  connect retry time 2;',
    '  error wait time 2, 10;',
    '  ipv4 { import all; export all; gateway direct; };',
    '}',
    ...hosts.map((h) => `protocol bgp ${h} from rrclient { neighbor ${lanIp(h, secondLan)} as ${ROUTER_AS}; }`),
    '',
  ].join('\n');
}

/** One member per host, TLS with client certificates toward clients and peers alike. */
async function startEtcdMember(host: TrinityHost, all: readonly HostName[], token: string, secondLan: readonly HostName[]): Promise<ChildProcess> {
  const data = path.join(host.dir, 'etcd');
  fs.mkdirSync(data);
  await runOk('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', data]);
  const name = `etcd-${host.name}`;
  const ip = host.ip;
  const child = spawnIn(host.ns, '/usr/bin/etcd', [
    '--name', name, '--data-dir', data,
    '--listen-client-urls', `https://${ip}:2379,${LOCAL_ETCD}`, '--advertise-client-urls', `https://${ip}:2379`,
    '--listen-peer-urls', `https://${ip}:2380`, '--initial-advertise-peer-urls', `https://${ip}:2380`,
    '--initial-cluster', all.map((h) => `etcd-${h}=https://${lanIp(h, secondLan)}:2380`).join(','),
    ...etcdTlsFlags(host.certs),
    '--initial-cluster-token', token, '--initial-cluster-state', 'new',
    '--heartbeat-interval', '100', '--election-timeout', '1000',
    '--auto-compaction-mode', 'revision', '--auto-compaction-retention', '5000',
    '--log-level', 'warn', '--logger', 'zap',
  ], path.join(host.dir, 'etcd.log'));
  fs.writeFileSync(path.join(host.dir, 'etcd.pid'), String(child.pid));
  onTeardown(`etcd of ${host.name}`, () => killChild(child));
  return child;
}

/**
 * Builds the whole lab (no node started: the tests run `calicoctl node`, as
 * the post does). About 20-30 s on 2 cores, most of it three dockerds.
 */
export async function startTrinityLab(opts: TrinityLabOptions = {}): Promise<TrinityLab> {
  const secondLan = opts.secondLan ?? [];
  const dir = await makeRunDir('trinity');
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  // One CA for the lab; the etcd server certificate names every host's LAN address and loopback.
  fs.mkdirSync(path.join(dir, 'certs'), { mode: 0o700 });
  const certs = makeTestCerts(path.join(dir, 'certs'), { ips: ['127.0.0.1', ...HOST_NAMES.map((n) => lanIp(n, secondLan))] });
  const lan = await Netns.create('trsw');
  for (const br of secondLan.length ? ['br0', 'br1'] : ['br0']) {
    await lan.ok('ip', ['link', 'add', br, 'type', 'bridge']);
    await lan.ok('ip', ['link', 'set', br, 'up']);
  }
  const plug = async (ns: Netns, ip: string, port: string, br = 'br0', ifName = 'eth0') => {
    await vethLink({ side: ns, ifName, addr: `${ip}/24` }, { side: lan, ifName: port });
    await lan.ok('ip', ['link', 'set', port, 'master', br]);
  };
  const sysctls = async (ns: Netns) => {
    await ns.forwarding();
    // Routed lab traffic is asymmetric (LAN -> trinity10 -> trinity20's container, replies direct).
    for (const k of ['all', 'default']) await ns.ok('sysctl', ['-qw', `net.ipv4.conf.${k}.rp_filter=0`]);
  };

  const router = await Netns.create('trrt');
  await sysctls(router);
  await plug(router, ROUTER_IP, 'p-router');
  if (secondLan.length) await plug(router, ROUTER2_IP, 'p-router2', 'br1', 'eth2');
  const client = await Netns.create('trcl');
  await vethLink({ side: router, ifName: 'eth1', addr: `${CLIENT_NET_ROUTER}/24` }, { side: client, ifName: 'eth0', addr: `${CLIENT_IP}/24` });
  await client.ok('ip', ['route', 'add', 'default', 'via', CLIENT_NET_ROUTER]);

  const hosts = {} as Record<HostName, TrinityHost>;
  for (const name of HOST_NAMES) {
    const ns = await Netns.create(`tr${name.slice(-2)}`);
    await sysctls(ns);
    const second = secondLan.includes(name);
    await plug(ns, lanIp(name, secondLan), `p-${name.slice(-2)}`, second ? 'br1' : 'br0');
    // The post's hosts reach the rest of the network through the router;
    // the default route is also where `calicoctl node` finds its address.
    await ns.ok('ip', ['route', 'add', 'default', 'via', second ? ROUTER2_IP : ROUTER_IP]);
    const hdir = path.join(dir, name);
    fs.mkdirSync(hdir);
    // iptables on, as on a stock Docker host: dockerd sets FORWARD DROP.
    const dockerd = await PrivateDockerd.start({ netns: ns.name, iptables: true });
    const host = new TrinityHost(name, ns, hdir, dockerd, certs, secondLan);
    // Nodes (and the BIRDs a killed node leaves behind) go before dockerd and the namespaces.
    onTeardown(`node of ${name}`, async () => {
      await killChild(host.node);
      host.killBird();
    });
    hosts[name] = host;
  }
  await Promise.all(HOST_NAMES.map((n) => ensureTestImage(hosts[n].dockerd)));

  const token = `trinity-${path.basename(dir)}`;
  const etcds = await Promise.all(HOST_NAMES.map((n) => startEtcdMember(hosts[n], HOST_NAMES, token, secondLan)));
  for (const n of HOST_NAMES) {
    await waitFor(`etcd member of ${n}`, async () => {
      if (etcds.some((c) => c.exitCode !== null)) throw new Error(`an etcd member exited: ${fs.readFileSync(path.join(hosts[n].dir, 'etcd.log'), 'utf8').slice(-2000)}`);
      return (await hosts[n].exec('etcdctl', ['endpoint', 'health'], { timeoutMs: 5000 })).code === 0;
    }, 60000, 200);
  }

  // The route reflector: the hosts are its clients from the start; it
  // learns routes only once they peer with it (bgppeer rr add).
  const rdir = path.join(dir, 'router');
  fs.mkdirSync(rdir);
  const conf = path.join(rdir, 'bird.conf');
  fs.writeFileSync(conf, routerBirdConfig(HOST_NAMES, secondLan));
  const sock = path.join(rdir, 'bird.ctl');
  const bird = spawnIn(router, '/usr/sbin/bird', ['-f', '-c', conf, '-s', sock, '-P', path.join(rdir, 'bird.pid')], path.join(rdir, 'bird.log'));
  onTeardown('router BIRD', () => killChild(bird));
  const routerBirdc = (args: string[]) => run('birdc', ['-s', sock, ...args], { timeoutMs: 5000 });
  await waitFor('router BIRD', async () => (await routerBirdc(['show', 'status'])).code === 0 || bird.exitCode !== null, 10000);
  if (bird.exitCode !== null) throw new Error(`router BIRD exited: ${fs.readFileSync(path.join(rdir, 'bird.log'), 'utf8')}`);

  // Runs first at teardown: containers go while their nodes (plugins) and
  // etcd still answer (dockerd would otherwise wait on a dead plugin for
  // each), then the nodes and every BIRD they started.
  onTeardown('lab containers and nodes', async () => {
    await Promise.all(
      HOST_NAMES.map(async (n) => {
        const host = hosts[n];
        const ids = (await host.direct(['ps', '-aq'], { timeoutMs: 10000 })).stdout.split('\n').filter(Boolean);
        if (ids.length) await host.direct(['rm', '-f', ...ids], { timeoutMs: 30000 });
        await killChild(host.node);
        host.killBird();
      }),
    );
  });

  return {
    dir,
    hosts,
    router,
    client,
    lan,
    image: TEST_IMAGE,
    routerBirdc,
    // busybox: the machine itself has no ping.
    clientPing: async (ip, waitS = 1) => (await client.exec('busybox', ['ping', '-c', '1', '-W', String(waitS), ip], { timeoutMs: (waitS + 3) * 1000 })).code === 0,
  };
}

/**
 * ms from now until `busybox ping -i 0.05` run in network namespace `netns`
 * (a host's, or a container's /proc/<pid>/ns/net) gets its first reply from ip.
 */
export function firstReply(netns: string, ip: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn('nsenter', [`--net=${netns}`, 'busybox', 'ping', '-i', '0.05', '-W', '1', ip], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const done = (e?: Error) => {
      clearTimeout(t);
      p.kill('SIGKILL');
      if (e) reject(e);
      else resolve(Date.now() - t0);
    };
    const t = setTimeout(() => done(new Error(`no reply from ${ip} in ${netns} within ${timeoutMs} ms: ${out}`)), timeoutMs);
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (/bytes from/.test(out)) done();
    });
    p.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  });
}

/** p-th percentile (nearest rank) of ms values. */
export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
