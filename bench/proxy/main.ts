/**
 * Proxy overhead, proxy vs direct, against one private dockerd, in one run:
 *   node dist/bench/proxy/main.js      (npm run bench:proxy)
 * Prints p50/p99 latency of /_ping and /containers/json (one keep-alive
 * connection, sequential requests: (a) a raw socket, (b) undici), a create's
 * p50 (no Calico env, read by the create interceptor), throughput of docker
 * cp (256 MiB in and out) and docker logs (100 MiB), and the wall time of
 * 30 x `docker run --rm img true`, each as a ratio proxy/direct. Two more
 * baselines: a raw Node `net` relay (TCP -> dockerd's socket, no parsing: the
 * floor of one user-space hop) and dockerd's own TCP listener (the docker
 * CLI itself is slower over TCP, so TCP rows are compared with it), and the
 * proxy's CPU time per GiB moved beside dockerd's, and its CPU time per
 * request beside the relay's (process CPU from /proc: robust to other load).
 * Not a test: figures depend on the machine and on what else runs on it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { Client } from 'undici';
import { PrivateDockerd, ensureTestImage, makeRunDir, removeTree, runOk, teardownAll, onTeardown, waitFor, CALICOCTL_MAIN } from '../../test/harness';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000);
const WARMUP = 300;
const CREATES = Number(process.env.BENCH_CREATES ?? 150);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function latency(client: Client, p: string): Promise<{ p50: number; p99: number }> {
  const one = async () => {
    const t = process.hrtime.bigint();
    const r = await client.request({ method: 'GET', path: p });
    await r.body.dump();
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  for (let i = 0; i < WARMUP; i++) await one();
  const xs: number[] = [];
  for (let i = 0; i < REQUESTS; i++) xs.push(await one());
  xs.sort((a, b) => a - b);
  return { p50: pct(xs, 50), p99: pct(xs, 99) };
}

/**
 * The other shape: one raw keep-alive socket, a request written as bytes and
 * the answer read whole (by its Content-Length) before the next: no client
 * library in the measurement. `at`: a unix socket path or a TCP port.
 */
async function rawLatency(at: string | number, p: string): Promise<{ p50: number; p99: number }> {
  const net = await import('node:net');
  const s = typeof at === 'number' ? net.connect(at, '127.0.0.1') : net.connect(at);
  s.setNoDelay(true);
  await new Promise((r) => s.once('connect', r));
  const req = Buffer.from(`GET ${p} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  let buf: Buffer = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  s.on('data', (b: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, b]) : b;
    wake?.();
  });
  const complete = (): boolean => {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return false;
    const m = /\r\ncontent-length: *(\d+)/i.exec(buf.subarray(0, end).toString('latin1'));
    if (!m) {
      // Chunked (dockerd's larger JSON): up to the last chunk, which no JSON body holds.
      const last = buf.indexOf('0\r\n\r\n', end + 4);
      if (last < 0 || !(last === end + 4 || buf.subarray(last - 2, last).toString() === '\r\n')) return false;
      buf = buf.subarray(last + 5);
      return true;
    }
    if (buf.length < end + 4 + Number(m[1])) return false;
    buf = buf.subarray(end + 4 + Number(m[1]));
    return true;
  };
  const one = async () => {
    const t = process.hrtime.bigint();
    s.write(req);
    while (!complete()) await new Promise<void>((r) => (wake = r));
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  for (let i = 0; i < WARMUP; i++) await one();
  const xs: number[] = [];
  for (let i = 0; i < REQUESTS; i++) xs.push(await one());
  s.destroy();
  xs.sort((a, b) => a - b);
  return { p50: pct(xs, 50), p99: pct(xs, 99) };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = Date.now();
  await fn();
  return (Date.now() - t) / 1000;
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** user + system CPU seconds of a process so far (/proc/<pid>/stat, clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The floor: a separate node process relaying TCP to dockerd's socket byte for byte (what the issue measured). */
const RELAY = `const net=require('net');const [port,sock,unix]=process.argv.slice(1);
const srv=net.createServer({allowHalfOpen:true,noDelay:true,highWaterMark:1<<20},(c)=>{const u=net.connect({path:sock,allowHalfOpen:true,highWaterMark:1<<20});c.pipe(u);u.pipe(c);
c.on('error',()=>u.destroy());u.on('error',()=>c.destroy());});
const ready=()=>process.stdout.write('READY\\n');if(unix)srv.listen(unix,ready);else srv.listen(Number(port),'127.0.0.1',ready);`;

/** A node child of this bench: stopped with SIGTERM at teardown, returned once `ready(its stdout so far)`. */
async function child(label: string, args: string[], ready: (out: string) => boolean, timeoutMs: number): Promise<ChildProcess> {
  const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout!.on('data', (b) => (out += b));
  onTeardown(label, async () => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  });
  await waitFor(label, async () => ready(out), timeoutMs);
  return c;
}

async function main(): Promise<void> {
  const dockerTcpPort = await freePort();
  // dockerd's own TCP listener beside its socket: the baseline for TCP rows.
  const d = await PrivateDockerd.start({ extraArgs: ['-H', `tcp://127.0.0.1:${dockerTcpPort}`] });
  const dockerTcp = `tcp://127.0.0.1:${dockerTcpPort}`;
  const image = await ensureTestImage(d);
  const dir = await makeRunDir('bench-proxy');
  onTeardown(`remove ${dir}`, () => removeTree(dir));
  const port = await freePort();
  const nodeArgs = (listen: string, stateDir: string) =>
    [CALICOCTL_MAIN, 'node', '--proxy-only', '--listen', listen, '--docker', d.host, '--state-dir', stateDir, '--log-level', 'warn'];
  const node = await child('calicoctl node', nodeArgs(`tcp://127.0.0.1:${port}`, dir), (out) => out.includes('before using'), 30000);
  const proxyHost = `tcp://127.0.0.1:${port}`;
  // The docker CLI itself is slower over TCP than over a unix socket for some
  // calls (`docker cp` out: ~10x against dockerd's own -H tcp:// listener), so
  // transfers are also measured through a proxy on a unix socket: that ratio
  // is the proxy's own cost; the TCP one is what DOCKER_HOST=localhost:2377 gives.
  const unixSock = path.join(dir, 'proxy.sock');
  const unixNode = await child('calicoctl node on a unix socket', nodeArgs(`unix://${unixSock}`, path.join(dir, 'u')), () => fs.existsSync(unixSock), 30000);
  const proxyUnix = `unix://${unixSock}`;
  const relayPort = await freePort();
  const relay = await child('the net relay', ['-e', RELAY, String(relayPort), d.socket], (out) => out.includes('READY'), 10000);
  // The same relay on a unix socket: the floor of the unix-socket transfer rows.
  const relaySock = path.join(dir, 'relay.sock');
  const relayUnix = await child('the net relay on a unix socket', ['-e', RELAY, '0', d.socket, relaySock], () => fs.existsSync(relaySock), 10000);
  const docker = (host: string, args: string) => runOk('sh', ['-c', `docker -H ${host} ${args}`], { timeoutMs: 600000 });

  const rows: [string, string, string, string, string][] = [];
  const add = (what: string, direct: number, proxied: number, unit: string, ratio: number, target: string) =>
    rows.push([what, `${direct.toFixed(3)} ${unit}`, `${proxied.toFixed(3)} ${unit}`, ratio.toFixed(2), target]);

  const loadBefore = os.loadavg();
  // Latency, shape (a): one raw keep-alive socket each, sequential requests (as the proxy issue measured).
  for (let i = 0; i < 5; i++) await docker(d.host, `create ${image} true`);
  // CPU per request of the relay and the proxy process (from /proc, robust to
  // the machine's other load where wall time is not), over each row's requests.
  const perRequest = (pid: number, s0: number) => ((cpuSeconds(pid) - s0) / (REQUESTS + WARMUP)) * 1e6;
  for (const p of ['/_ping', '/containers/json?all=1']) {
    const a = await rawLatency(d.socket, p);
    const r0 = cpuSeconds(relay.pid!);
    const r = await rawLatency(relayPort, p);
    const rCpu = perRequest(relay.pid!, r0);
    const b0 = cpuSeconds(node.pid!);
    const b = await rawLatency(port, p);
    const bCpu = perRequest(node.pid!, b0);
    add(`(a) raw socket: GET ${p} p50, proxy vs direct`, a.p50, b.p50, 'ms', b.p50 / a.p50, '');
    add(`(a) raw socket: GET ${p} p50, raw net relay vs direct`, a.p50, r.p50, 'ms', r.p50 / a.p50, '');
    add(`(a) raw socket: GET ${p} p50, proxy vs raw net relay`, r.p50, b.p50, 'ms', b.p50 / r.p50, '<= 1.1');
    add(`(a) raw socket: GET ${p} CPU per request, proxy vs raw net relay`, rCpu, bCpu, 'µs', bCpu / rCpu, '');
  }
  // Shape (b): undici, one keep-alive connection each, sequential requests.
  const direct = new Client('http://localhost', { socketPath: d.socket });
  const directTcp = new Client(`http://127.0.0.1:${dockerTcpPort}`);
  const relayed = new Client(`http://127.0.0.1:${relayPort}`);
  const proxied = new Client(`http://127.0.0.1:${port}`);
  for (const p of ['/_ping', '/containers/json?all=1']) {
    const a = await latency(direct, p);
    const t = await latency(directTcp, p);
    const r = await latency(relayed, p);
    const b = await latency(proxied, p);
    add(`(b) undici: GET ${p} p50`, a.p50, b.p50, 'ms', b.p50 / a.p50, '');
    add(`GET ${p} p99`, a.p99, b.p99, 'ms', b.p99 / a.p99, '');
    add(`GET ${p} p50, dockerd's TCP listener vs its socket`, a.p50, t.p50, 'ms', t.p50 / a.p50, '');
    add(`GET ${p} p50, raw net relay (floor) vs direct`, a.p50, r.p50, 'ms', r.p50 / a.p50, '');
    add(`(b) undici: GET ${p} p50, proxy vs raw net relay`, r.p50, b.p50, 'ms', b.p50 / r.p50, '<= 1.1');
  }
  await directTcp.close();
  await relayed.close();

  // A create (no Calico env) through a proxy with the node's create
  // interceptor, in a process of its own (create-proxy.ts): the body is
  // gathered, read as Go reads it, and passed on.
  const icpPort = await freePort();
  await child('the create-interceptor proxy', [path.join(__dirname, 'create-proxy.js'), String(icpPort), d.host], (out) => out.includes('READY'), 10000);
  const intercepted = new Client(`http://127.0.0.1:${icpPort}`);
  const createBody = JSON.stringify({ Image: image, Cmd: ['true'], Env: ['A=1'], Labels: { bench: 'create' } });
  const create = async (c: Client) => {
    const t = process.hrtime.bigint();
    const r = await c.request({ method: 'POST', path: '/containers/create', headers: { 'content-type': 'application/json' }, body: createBody });
    await r.body.dump();
    if (r.statusCode !== 201) throw new Error(`create answered ${r.statusCode}`);
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  // One create takes 12-25 ms (more as containers pile up in dockerd) and
  // varies by a few ms from one to the next: CREATES pairs, direct and proxied one
  // after the other, so both see the same dockerd (the same number of
  // containers, the same load) and each p50 rests on CREATES samples.
  const cd: number[] = [];
  const cp: number[] = [];
  for (let i = 0; i < 5; i++) await create(intercepted);
  for (let i = 0; i < CREATES; i++) {
    cd.push(await create(direct));
    cp.push(await create(intercepted));
  }
  cd.sort((x, y) => x - y);
  cp.sort((x, y) => x - y);
  add('POST /containers/create p50 (no Calico env), proxy vs direct', pct(cd, 50), pct(cp, 50), 'ms', pct(cp, 50) / pct(cd, 50), '<= 1.05');
  await docker(d.host, 'container prune -f --filter label=bench=create');
  await proxied.close();
  await intercepted.close();
  await direct.close();

  // docker cp of 256 MiB in and out.
  const blob = path.join(dir, 'blob');
  await runOk('sh', ['-c', `head -c 256M /dev/urandom > ${blob}`]);
  await docker(d.host, `run -d --name cpbench ${image} sleep 3600`);
  await docker(d.host, `run --name logbench ${image} sh -c 'yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 104857600'`);
  // Each transfer: the baseline, the raw relay (floor of any user-space hop)
  // and the proxy, alternating, best of `rounds` each (3 for cp in, which
  // has targets and takes about a second; 2 for the others: cp out over TCP
  // alone takes ~12 s, the docker CLI's own pace there).
  let proxyCpu = 0;
  let relayCpu = 0;
  let dockerdCpu = 0;
  let movedMiB = 0;
  const pids = { tcp: { proxy: node.pid!, relay: relay.pid! }, unix: { proxy: unixNode.pid!, relay: relayUnix.pid! } };
  const relayHost = { tcp: `tcp://127.0.0.1:${relayPort}`, unix: `unix://${relaySock}` };
  for (const [label, via, base] of [['tcp', proxyHost, dockerTcp], ['unix', proxyUnix, d.host]] as const) {
    const baseName = label === 'tcp' ? "dockerd's TCP listener" : "dockerd's socket";
    const transfer = async (what: string, mib: number, args: string, rounds = 2) => {
      let b = Infinity;
      let r = Infinity;
      let p = Infinity;
      for (let i = 0; i < rounds; i++) {
        b = Math.min(b, await timed(() => docker(base, args)));
        const r0 = cpuSeconds(pids[label].relay);
        r = Math.min(r, await timed(() => docker(relayHost[label], args)));
        relayCpu += cpuSeconds(pids[label].relay) - r0;
        const c0 = cpuSeconds(pids[label].proxy);
        const k0 = cpuSeconds(d.pid!);
        p = Math.min(p, await timed(() => docker(via, args)));
        proxyCpu += cpuSeconds(pids[label].proxy) - c0;
        dockerdCpu += cpuSeconds(d.pid!) - k0;
        movedMiB += mib;
      }
      const cpIn = what.startsWith('docker cp 256 MiB in');
      add(`${what} (proxy ${label} vs ${baseName})`, mib / b, mib / p, 'MiB/s', b / p, cpIn && label === 'tcp' ? '>= 0.85' : '');
      add(`${what} (raw relay ${label} vs ${baseName}: the floor)`, mib / b, mib / r, 'MiB/s', b / r, '');
      add(`${what} (proxy ${label} vs raw relay ${label})`, mib / r, mib / p, 'MiB/s', r / p, cpIn ? '>= 0.95' : '');
    };
    await transfer('docker cp 256 MiB in', 256, `cp ${blob} cpbench:/tmp/blob`, 3);
    await transfer('docker cp 256 MiB out', 256, `cp cpbench:/tmp/blob - > /dev/null`);
    await transfer('docker logs 100 MiB', 100, 'logs logbench > /dev/null');
  }
  const gib = movedMiB / 1024;
  add('CPU s per GiB moved: dockerd vs proxy', dockerdCpu / gib, proxyCpu / gib, 's', proxyCpu / dockerdCpu, '');
  add('CPU s per GiB moved: raw relay vs proxy', relayCpu / gib, proxyCpu / gib, 's', proxyCpu / relayCpu, '');
  fs.rmSync(blob);

  // 30 x docker run --rm img true, in alternating blocks of 5.
  let runD = 0;
  let runP = 0;
  await docker(d.host, `run --rm ${image} true`);
  for (let block = 0; block < 6; block++) {
    runD += await timed(async () => { for (let i = 0; i < 5; i++) await docker(d.host, `run --rm ${image} true`); });
    runP += await timed(async () => { for (let i = 0; i < 5; i++) await docker(proxyHost, `run --rm ${image} true`); });
  }
  add('30 x docker run --rm true', runD, runP, 's', runP / runD, '<= 1.03');

  const widths = [0, 1, 2, 3, 4].map((i) => Math.max(...rows.map((r) => r[i].length), ['what', 'baseline', 'measured', 'ratio', 'target'][i].length));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ');
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  console.log(`calico-docker proxy benchmark: ${os.cpus().length} CPUs, load average ${load(loadBefore)} at the start, ${load(os.loadavg())} at the end, node ${process.version}`);
  console.log(`latency: ${REQUESTS} sequential requests per row after ${WARMUP} warm-up, one keep-alive connection, (a) raw socket, (b) undici (direct: unix socket; proxy and relay: TCP loopback -> unix socket). Ratios are measured/baseline; throughput ratios are baseline time/measured time`);
  console.log(line(['what', 'baseline', 'measured', 'ratio', 'target']));
  for (const r of rows) console.log(line(r));
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());
