// bench/run: what CALICO_IP costs a `docker run`. One run, same dockerd:
//   calico: docker run --rm -e CALICO_IP=auto img true   through the proxy
//   bridge: docker run --rm img true                     directly, Docker's default bridge (iptables on)
// 50 each, interleaved (plus the bridge run through the proxy, to show the
// proxy hop's own share); p50 and p99 ratio (target <= 1.15x). When the target
// is missed, a breakdown by API call (create, start, wait, removal) says where
// the time goes. Then what policy costs the start path, with the real
// `calicoctl node` in place of the lab's node:
//   policy:    docker run --rm -e CALICO_IP=auto -e CALICO_PROFILE=G img true   (the node as shipped)
//   no policy: the same against `calicoctl node --no-policy` (a bench-only switch)
// in alternating blocks, p50/p99 ratio (target <= 1.05x p50).
// Not a test: timings depend on the machine.
// Usage: node dist/bench/run/main.js [runs]
import http from 'node:http';
import os from 'node:os';
import { teardownAll } from '../../test/harness';
import { CalicoLab } from '../../test/e2e/calico-lab';

const TARGET = 1.15;
const POLICY_TARGET = 1.05;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

function api(socket: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: string }> {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, method, path, headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {} },
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
  const body = { Image: image, Cmd: ['true'], Env: calico ? ['CALICO_IP=auto'] : [], HostConfig: { AutoRemove: true } };
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

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 50);
  console.log('starting a lab host (netns, etcd, dockerd with a private bridge and iptables, calico node)...');
  // The node's production defaults: a sweep every 30 s, not the tests' every 2 s.
  const lab = await CalicoLab.start({ pools: ['10.68.0.0/16'], bridge: true, logLevel: 'warn', sweepIntervalMs: 30000, gcGraceMs: 120000 });
  const calicoRun = () => lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', lab.image, 'true']);
  const bridgeRun = () => lab.direct(['run', '--rm', lab.image, 'true']);
  // The same bridge run through the proxy: the proxy hop's own share.
  const hopRun = () => lab.docker(['run', '--rm', lab.image, 'true']);
  for (let i = 0; i < 3; i++) {
    await calicoRun();
    await bridgeRun();
  }
  const calico: number[] = [];
  const bridge: number[] = [];
  const hop: number[] = [];
  for (let i = 0; i < runs; i++) {
    const a = await calicoRun();
    if (a.code !== 0) throw new Error(`calico run failed: ${a.stderr}`);
    calico.push(a.ms);
    const b = await bridgeRun();
    if (b.code !== 0) throw new Error(`bridge run failed: ${b.stderr}`);
    bridge.push(b.ms);
    const h = await hopRun();
    if (h.code !== 0) throw new Error(`bridge run through the proxy failed: ${h.stderr}`);
    hop.push(h.ms);
  }
  const row = (name: string, xs: number[]) => `${name.padEnd(28)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms   p99 ${pct(xs, 99).toFixed(0).padStart(5)} ms`;
  const r50 = pct(calico, 50) / pct(bridge, 50);
  const r99 = pct(calico, 99) / pct(bridge, 99);
  console.log(`\ndocker run --rm img true, ${runs} each, interleaved:`);
  console.log(row('calico (proxy, CALICO_IP)', calico));
  console.log(row('bridge (direct)', bridge));
  console.log(row('bridge through the proxy', hop));
  console.log(`ratio p50 ${r50.toFixed(2)}x   p99 ${r99.toFixed(2)}x   (target <= ${TARGET}x: ${r50 <= TARGET && r99 <= TARGET ? 'met' : 'MISSED'})`);
  console.log(`of which the proxy hop alone (bridge through the proxy / direct): p50 ${(pct(hop, 50) / pct(bridge, 50)).toFixed(2)}x   p99 ${(pct(hop, 99) / pct(bridge, 99)).toFixed(2)}x`);

  if (r50 > TARGET || r99 > TARGET || process.env.BENCH_BREAKDOWN) {
    const n = Math.min(runs, 20);
    const sum = (calicoSide: boolean) => async () => {
      const acc: Record<string, number[]> = {};
      for (let i = 0; i < n; i++) {
        const t = await phases(calicoSide ? lab.proxySocket : lab.dockerd.socket, lab.image, calicoSide);
        for (const [k, v] of Object.entries(t)) (acc[k] ??= []).push(v);
      }
      return acc;
    };
    const c = await sum(true)();
    const b = await sum(false)();
    console.log(`\nwhere the time goes (p50 over ${n} containers, by API call):`);
    console.log(`${'call'.padEnd(28)} ${'calico'.padStart(8)} ${'bridge'.padStart(8)} ${'delta'.padStart(8)}`);
    for (const k of Object.keys(c)) {
      const cv = pct(c[k], 50);
      const bv = pct(b[k], 50);
      console.log(`${k.padEnd(28)} ${cv.toFixed(1).padStart(8)} ${bv.toFixed(1).padStart(8)} ${(cv - bv).toFixed(1).padStart(8)}`);
    }
    console.log('create: proxy hop + IPAM reservation in etcd; start: dockerd with the remote driver + plugin (veth, routes) + endpoint record; remove: veth teardown.');
    console.log(`machine load average: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.cpus().length} cores (figures are only comparable on a quiet machine)`);
  }
  await policyCost(lab, runs);
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
    for (let i = 0; i < block; i++) {
      const r = await gRun();
      if (r.code !== 0) throw new Error(`docker run (policy ${policy}) failed: ${r.stderr}`);
      into.push(r.ms);
    }
    node.child.kill('SIGTERM');
    await node.exited;
  }
  const r50 = pct(withPolicy, 50) / pct(without, 50);
  const r99 = pct(withPolicy, 99) / pct(without, 99);
  const row = (name: string, xs: number[]) => `${name.padEnd(28)} p50 ${pct(xs, 50).toFixed(0).padStart(5)} ms   p99 ${pct(xs, 99).toFixed(0).padStart(5)} ms`;
  console.log(`\ndocker run --rm -e CALICO_IP=auto -e CALICO_PROFILE=G img true, ${withPolicy.length} each, alternating blocks:`);
  console.log(row('with policy', withPolicy));
  console.log(row('without policy (--no-policy)', without));
  console.log(`ratio p50 ${r50.toFixed(2)}x   p99 ${r99.toFixed(2)}x   (target p50 <= ${POLICY_TARGET}x: ${r50 <= POLICY_TARGET ? 'met' : 'MISSED'})`);
  console.log(`machine load average: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.cpus().length} cores`);
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());
