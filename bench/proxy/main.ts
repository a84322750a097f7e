/**
 * Proxy overhead, proxy vs direct, against one private dockerd, in one run:
 *   node dist/bench/proxy/main.js      (npm run bench:proxy)
 * Prints p50/p99 latency of /_ping and /containers/json, throughput of docker
 * cp (256 MiB in and out) and docker logs (100 MiB), and the wall time of
 * 30 x `docker run --rm img true`, each as a ratio proxy/direct.
 * Not a test: figures depend on the machine and on what else runs on it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Client } from 'undici';
import { PrivateDockerd, ensureTestImage, makeRunDir, removeTree, runOk, teardownAll, onTeardown, waitFor, CALICOCTL_MAIN } from '../../test/harness';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000);
const WARMUP = 300;

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

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = Date.now();
  await fn();
  return (Date.now() - t) / 1000;
}

/** Best of `reps` (least disturbed by other load), alternating direct and proxy so drift hits both. */
async function bestOf(reps: number, direct: () => Promise<unknown>, proxied: () => Promise<unknown>): Promise<{ d: number; p: number }> {
  let d = Infinity;
  let p = Infinity;
  for (let i = 0; i < reps; i++) {
    d = Math.min(d, await timed(direct));
    p = Math.min(p, await timed(proxied));
  }
  return { d, p };
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

async function main(): Promise<void> {
  const d = await PrivateDockerd.start();
  const image = await ensureTestImage(d);
  const dir = await makeRunDir('bench-proxy');
  onTeardown(`remove ${dir}`, () => removeTree(dir));
  const port = await freePort();
  const node = spawn(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--listen', `tcp://127.0.0.1:${port}`, '--docker-upstream', d.host, '--state-dir', dir, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  node.stdout!.on('data', (c) => (out += c));
  onTeardown('calicoctl node', async () => {
    const exited = new Promise((r) => node.once('exit', r));
    node.kill('SIGTERM');
    await exited;
  });
  await waitFor('calicoctl node', async () => out.includes('before using'), 30000);
  const proxyHost = `tcp://127.0.0.1:${port}`;
  // The docker CLI itself is slower over TCP than over a unix socket for some
  // calls (`docker cp` out: ~10x against dockerd's own -H tcp:// listener), so
  // transfers are also measured through a proxy on a unix socket: that ratio
  // is the proxy's own cost; the TCP one is what DOCKER_HOST=localhost:2377 gives.
  const unixSock = path.join(dir, 'proxy.sock');
  const unixNode = spawn(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--listen', `unix://${unixSock}`, '--docker-upstream', d.host, '--state-dir', path.join(dir, 'u'), '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  onTeardown('calicoctl node (unix)', async () => {
    const exited = new Promise((r) => unixNode.once('exit', r));
    unixNode.kill('SIGTERM');
    await exited;
  });
  await waitFor('calicoctl node on a unix socket', async () => fs.existsSync(unixSock), 30000);
  const proxyUnix = `unix://${unixSock}`;
  const docker = (host: string, args: string) => runOk('sh', ['-c', `docker -H ${host} ${args}`], { timeoutMs: 600000 });
  const both = (args: string, via = proxyHost) => [() => docker(d.host, args), () => docker(via, args)] as const;

  const rows: [string, string, string, string, string][] = [];
  const add = (what: string, direct: number, proxied: number, unit: string, ratio: number, target: string) =>
    rows.push([what, `${direct.toFixed(3)} ${unit}`, `${proxied.toFixed(3)} ${unit}`, ratio.toFixed(2), target]);

  // Latency: one keep-alive connection each, sequential requests.
  for (let i = 0; i < 5; i++) await docker(d.host, `create ${image} true`);
  const direct = new Client('http://localhost', { socketPath: d.socket });
  const proxied = new Client(`http://127.0.0.1:${port}`);
  for (const p of ['/_ping', '/containers/json?all=1']) {
    const a = await latency(direct, p);
    const b = await latency(proxied, p);
    add(`GET ${p} p50`, a.p50, b.p50, 'ms', b.p50 / a.p50, '<= 1.2');
    add(`GET ${p} p99`, a.p99, b.p99, 'ms', b.p99 / a.p99, '');
  }
  await direct.close();
  await proxied.close();

  // docker cp of 256 MiB in and out.
  const blob = path.join(dir, 'blob');
  await runOk('sh', ['-c', `head -c 256M /dev/urandom > ${blob}`]);
  await docker(d.host, `run -d --name cpbench ${image} sleep 3600`);
  await docker(d.host, `run --name logbench ${image} sh -c 'yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 104857600'`);
  for (const [label, via] of [['tcp', proxyHost], ['unix', proxyUnix]] as const) {
    const cpIn = await bestOf(2, ...both(`cp ${blob} cpbench:/tmp/blob`, via));
    add(`docker cp 256 MiB in (proxy ${label})`, 256 / cpIn.d, 256 / cpIn.p, 'MiB/s', cpIn.d / cpIn.p, '>= 0.9');
    const cpOut = await bestOf(2, ...both(`cp cpbench:/tmp/blob - > /dev/null`, via));
    add(`docker cp 256 MiB out (proxy ${label})`, 256 / cpOut.d, 256 / cpOut.p, 'MiB/s', cpOut.d / cpOut.p, '>= 0.9');
    const logs = await bestOf(2, ...both('logs logbench > /dev/null', via));
    add(`docker logs 100 MiB (proxy ${label})`, 100 / logs.d, 100 / logs.p, 'MiB/s', logs.d / logs.p, '>= 0.9');
  }
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

  const widths = [0, 1, 2, 3, 4].map((i) => Math.max(...rows.map((r) => r[i].length), ['what', 'direct', 'proxy', 'proxy/direct', 'target'][i].length));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(`calico-docker proxy benchmark: ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, node ${process.version}`);
  console.log(`latency: ${REQUESTS} sequential requests per row after ${WARMUP} warm-up, one keep-alive connection (direct: unix socket; proxy: TCP loopback -> unix socket)`);
  console.log(line(['what', 'direct', 'proxy', 'proxy/direct', 'target']));
  for (const r of rows) console.log(line(r));
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());
