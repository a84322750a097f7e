// bench/run: what CALICO_IP costs a `docker run`, driven with the docker CLI
// as a user runs it. One run, one dockerd (default bridge, iptables on):
//   calico:  docker run --rm -e CALICO_IP=auto img true         through the proxy
//   network: docker run --rm --network <user-defined bridge> img true   on dockerd's socket
//   bridge:  docker run --rm img true                            on dockerd's socket (default bridge, printed beside)
// in interleaved triples; p50/p99 and the ratio calico / user-defined network
// (targets: <= 1.10x on an empty host, <= 1.15x with --full N calico
// containers already running on the host). Then, when the target is missed
// or BENCH_BREAKDOWN is set, where the time goes: by API call (calico vs the
// user-defined network) and by phase, from the node's start trace (its
// debug lines "container start trace"). Then what policy costs the start
// path, with the real `calicoctl node` in place of the lab's node:
//   policy:    docker run --rm -e CALICO_IP=auto -e CALICO_PROFILE=G img true   (the node as shipped)
//   no policy: the same against `calicoctl node --no-policy` (a bench-only switch)
// in alternating blocks, p50/p99 ratio (target <= 1.05x p50).
// Not a test: timings depend on the machine; the load average is printed beside them.
// Usage: node dist/bench/run/main.js [runs] [--full N] [--skip-policy]
//   runs     pairs per mode (default 15)
//   --full N also measure with N calico containers running on the host (default 200; 0: empty host only)
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { teardownAll } from '../../test/harness';
import { CalicoLab } from '../../test/e2e/calico-lab';

const TARGET_EMPTY = 1.1;
const TARGET_FULL = 1.15;
const POLICY_TARGET = 1.05;
const NETWORK = 'benchnet';

interface Args {
  runs: number;
  full: number;
  policy: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { runs: 15, full: 200, policy: true };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    if (x === '--full') a.full = Number(argv[++i]);
    else if (x === '--skip-policy') a.policy = false;
    else if (/^\d+$/.test(x)) a.runs = Number(x);
    else throw new Error(`unknown argument ${x}: usage [runs] [--full N] [--skip-policy]`);
  }
  return a;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const load = () => `load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} on ${os.cpus().length} cores`;
const row = (name: string, xs: number[]) => `  ${name.padEnd(34)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms   p99 ${pct(xs, 99).toFixed(0).padStart(5)} ms`;

function api(socket: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: string }> {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, method, path: p, headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {} },
      (res) => {
        let text = '';
        res.on('data', (b: Buffer) => (text += b.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** One container's life by API call, as `docker run --rm` makes them, timed per call. */
async function phases(socket: string, image: string, calico: boolean): Promise<Record<string, number>> {
  const t: Record<string, number> = {};
  let at = performance.now();
  const lap = (k: string) => {
    const now = performance.now();
    t[k] = now - at;
    at = now;
  };
  const body = {
    Image: image,
    Cmd: ['true'],
    Env: calico ? ['CALICO_IP=auto'] : [],
    HostConfig: { AutoRemove: true, ...(calico ? {} : { NetworkMode: NETWORK }) },
  };
  const c = await api(socket, 'POST', '/v1.41/containers/create', body);
  if (c.status !== 201) throw new Error(`create: ${c.status} ${c.body}`);
  const id = (JSON.parse(c.body) as { Id: string }).Id;
  lap('create');
  // As the CLI does: wait for removal is asked before start.
  const removed = api(socket, 'POST', `/v1.41/containers/${id}/wait?condition=removed`);
  await new Promise((r) => setTimeout(r, 5));
  at = performance.now();
  const s = await api(socket, 'POST', `/v1.41/containers/${id}/start`);
  if (s.status !== 204) throw new Error(`start: ${s.status} ${s.body}`);
  lap('start');
  await removed;
  lap('exit + network teardown + removal');
  return t;
}

/** The node's "container start trace" lines written since `from` (byte offset of its log). */
function traces(logFile: string, from: number): Record<string, number>[] {
  const text = fs.readFileSync(logFile).subarray(from).toString();
  const out: Record<string, number>[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"container start trace"')) continue;
    try {
      out.push((JSON.parse(line) as { ms: Record<string, number> }).ms);
    } catch {
      // a line cut by the read: skipped
    }
  }
  return out;
}

async function ok(p: Promise<{ code: number | null; stderr: string; ms: number }>, what: string): Promise<number> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed: ${r.stderr}`);
  return r.ms;
}

/** Interleaved triples, their p50/p99 and ratios, and the node's start trace over the calico runs. */
async function measure(lab: CalicoLab, title: string, runs: number, target: number, logFile: string): Promise<void> {
  const calico: number[] = [];
  const network: number[] = [];
  const bridge: number[] = [];
  const from = fs.statSync(logFile).size;
  for (let i = 0; i < runs; i++) {
    calico.push(await ok(lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', lab.image, 'true']), 'calico run'));
    network.push(await ok(lab.direct(['run', '--rm', '--network', NETWORK, lab.image, 'true']), 'user-defined network run'));
    bridge.push(await ok(lab.direct(['run', '--rm', lab.image, 'true']), 'default bridge run'));
  }
  const r50 = pct(calico, 50) / pct(network, 50);
  const r99 = pct(calico, 99) / pct(network, 99);
  console.log(`\n${title}: docker run --rm img true with the docker CLI, ${runs} interleaved triples (${load()}):`);
  console.log(row('calico (proxy, CALICO_IP=auto)', calico));
  console.log(row(`user-defined bridge (--network)`, network));
  console.log(row('default bridge', bridge));
  console.log(`  calico / user-defined bridge: p50 ${r50.toFixed(2)}x  p99 ${r99.toFixed(2)}x   (target p50 <= ${target}x: ${r50 <= target ? 'met' : 'MISSED'})`);
  console.log(`  user-defined / default bridge: p50 ${(pct(network, 50) / pct(bridge, 50)).toFixed(2)}x`);
  const ts = traces(logFile, from);
  if (ts.length) {
    console.log(`  calico start by phase, p50 over ${ts.length} starts (the node's start trace; "dockerd:" = dockerd's own time between our calls):`);
    const keys = [...new Set(ts.flatMap((t) => Object.keys(t)))];
    for (const k of keys) {
      const xs = ts.map((t) => t[k]).filter((x): x is number => x !== undefined);
      console.log(`    ${k.padEnd(44)} ${pct(xs, 50).toFixed(1).padStart(7)} ms   p99 ${pct(xs, 99).toFixed(1).padStart(7)} ms`);
    }
  }
  if (r50 > target || process.env.BENCH_BREAKDOWN) await breakdown(lab, Math.min(runs, 15));
}

async function breakdown(lab: CalicoLab, n: number): Promise<void> {
  const acc: Record<'calico' | 'network', Record<string, number[]>> = { calico: {}, network: {} };
  for (let i = 0; i < n; i++) {
    for (const side of ['calico', 'network'] as const) {
      const t = await phases(side === 'calico' ? lab.proxySocket : lab.dockerd.socket, lab.image, side === 'calico');
      for (const [k, v] of Object.entries(t)) (acc[side][k] ??= []).push(v);
    }
  }
  console.log(`  by API call (p50 over ${n} containers each, interleaved):`);
  console.log(`    ${'call'.padEnd(36)} ${'calico'.padStart(8)} ${'network'.padStart(8)} ${'delta'.padStart(8)}`);
  for (const k of Object.keys(acc.calico)) {
    const c = pct(acc.calico[k], 50);
    const b = pct(acc.network[k], 50);
    console.log(`    ${k.padEnd(36)} ${c.toFixed(1).padStart(8)} ${b.toFixed(1).padStart(8)} ${(c - b).toFixed(1).padStart(8)}`);
  }
}

/** N calico containers running on the host (through the proxy, a few at a time). */
async function fill(lab: CalicoLab, n: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const r = await lab.docker(['run', '-d', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '86400']);
      if (r.code !== 0) throw new Error(`starting a background container failed: ${r.stderr}`);
      ids.push(r.stdout.trim());
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  return ids;
}

async function empty(lab: CalicoLab, ids: string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 50) await lab.docker(['rm', '-f', ...ids.slice(i, i + 50)]);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  console.log('starting a lab host (netns, etcd, dockerd with its default bridge and iptables, calico node)...');
  // The node's production defaults (a sweep every 30 s); debug level for its start trace.
  const lab = await CalicoLab.start({ pools: ['10.68.0.0/16'], bridge: true, logLevel: 'debug', sweepIntervalMs: 30000, gcGraceMs: 120000 });
  const logFile = path.join(lab.dir, 'node.log');
  const n = await lab.direct(['network', 'create', NETWORK]);
  if (n.code !== 0) throw new Error(`docker network create ${NETWORK}: ${n.stderr}`);
  for (let i = 0; i < 3; i++) {
    await ok(lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', lab.image, 'true']), 'warm-up');
    await ok(lab.direct(['run', '--rm', '--network', NETWORK, lab.image, 'true']), 'warm-up');
    await ok(lab.direct(['run', '--rm', lab.image, 'true']), 'warm-up');
  }
  await measure(lab, 'empty host', args.runs, TARGET_EMPTY, logFile);
  if (args.full > 0) {
    const t = performance.now();
    const ids = await fill(lab, args.full);
    console.log(`\n(${args.full} calico containers started in ${((performance.now() - t) / 1000).toFixed(0)} s)`);
    await measure(lab, `${args.full} calico containers running`, args.runs, TARGET_FULL, logFile);
    await empty(lab, ids);
  }
  if (args.policy) await policyCost(lab, args.runs);
}

/** With policy vs without the policy component, same dockerd, alternating blocks of runs/2 (each node restarted per block). */
async function policyCost(lab: CalicoLab, runs: number): Promise<void> {
  await lab.stopNode();
  const gRun = () => lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', '-e', 'CALICO_PROFILE=G', lab.image, 'true']);
  const withPolicy: number[] = [];
  const without: number[] = [];
  const block = Math.max(1, Math.floor(runs / 2));
  for (const [policy, into] of [[true, withPolicy], [false, without], [true, withPolicy], [false, without]] as const) {
    const node = lab.spawnCalicoctlNode({ extra: ['--log-level', 'warn', ...(policy ? [] : ['--no-policy'])] });
    await node.ready();
    if (node.child.exitCode !== null) throw new Error(`calicoctl node exited ${node.child.exitCode}: ${node.log()}`);
    for (let i = 0; i < 2; i++) await gRun(); // warm-up after the node's start
    for (let i = 0; i < block; i++) into.push(await ok(gRun(), `docker run (policy ${policy})`));
    node.child.kill('SIGTERM');
    await node.exited;
  }
  const r50 = pct(withPolicy, 50) / pct(without, 50);
  const r99 = pct(withPolicy, 99) / pct(without, 99);
  console.log(`\npolicy: docker run --rm -e CALICO_IP=auto -e CALICO_PROFILE=G img true, ${withPolicy.length} each, alternating blocks (${load()}):`);
  console.log(row('with policy', withPolicy));
  console.log(row('without policy (--no-policy)', without));
  console.log(`  ratio p50 ${r50.toFixed(2)}x   p99 ${r99.toFixed(2)}x   (target p50 <= ${POLICY_TARGET}x: ${r50 <= POLICY_TARGET ? 'met' : 'MISSED'})`);
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());
