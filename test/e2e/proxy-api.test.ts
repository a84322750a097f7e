import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { teardownAll, makeRunDir, removeTree, run, runOk, onTeardown, waitFor, sleep, PrivateDockerd, ensureTestImage, CALICOCTL_MAIN, RunResult } from '../harness';
import { DockerProxy } from '../../src/proxy';
import type { Interceptor } from '../../src/proxy';
import { silentLogger } from '../../src/log/logger';
import { compare, assertSame, maskIds, freePort, ProxyFixture } from './proxy-fixture';

// Checklist section 7, items 1-4, 25-34, 37-38, through `calicoctl node` (a
// real node process: its RSS is measured, its log is read), plus the
// interceptor seam through an in-process proxy.

after(teardownAll);
let f: ProxyFixture;
let dir: string;
let node: ChildProcess;
let nodeLog: string;
let nodeOut = '';
let seamHost: string;
let seamProxy: DockerProxy;
const seamSeen: { path: string; apiVersion?: string }[] = [];

const seam: Interceptor = {
  name: 'test-create',
  matches: (m, p) => m === 'POST' && p === '/containers/create',
  async onRequest(ctx, body) {
    seamSeen.push({ path: ctx.path, apiVersion: ctx.apiVersion });
    const j = JSON.parse(body.toString() || '{}');
    const env: string[] = j.Env ?? [];
    if (env.includes('SEAM=refuse')) return { action: 'reply', status: 400, message: 'refused by the test interceptor: SEAM=refuse' };
    if (env.includes('SEAM=label')) {
      j.Labels = { ...(j.Labels ?? {}), seam: 'forwarded' };
      return { action: 'forward', body: Buffer.from(JSON.stringify(j)) };
    }
    return { action: 'pass' };
  },
};

before(async () => {
  const d = await PrivateDockerd.start();
  const image = await ensureTestImage(d);
  dir = await makeRunDir('proxy-api');
  onTeardown(`remove ${dir}`, () => removeTree(dir));
  const port = await freePort();
  nodeLog = path.join(dir, 'node.log');
  const logFd = fs.openSync(nodeLog, 'a');
  node = spawn(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--listen', `tcp://127.0.0.1:${port}`, '--docker', d.host, '--state-dir', dir, '--log-level', 'debug'], {
    stdio: ['ignore', 'pipe', logFd],
  });
  fs.closeSync(logFd);
  node.stdout!.on('data', (c) => (nodeOut += c));
  onTeardown('calicoctl node', async () => {
    if (node.exitCode === null) {
      const exited = new Promise((r) => node.once('exit', r));
      node.kill('SIGTERM');
      await exited;
    }
  });
  await waitFor('calicoctl node to print its DOCKER_HOST hint', async () => nodeOut.includes('before using'), 30000);
  const proxyHost = `tcp://127.0.0.1:${port}`;
  f = {
    d, proxy: undefined as unknown as DockerProxy, proxyHost, image,
    direct: (args, o) => d.docker(args, { timeoutMs: 120000, ...o }),
    proxied: (args, o) => d.docker(args, { timeoutMs: 120000, ...o, host: proxyHost }),
  };
  seamProxy = new DockerProxy({ listen: 'tcp://127.0.0.1:0', upstream: d.host, interceptors: [seam] }, silentLogger());
  await seamProxy.start();
  onTeardown('seam proxy', () => seamProxy.stop());
  seamHost = `tcp://127.0.0.1:${(seamProxy.address as { port: number }).port}`;
  await f.direct(['run', '-d', '--name', 'cx', image, 'sleep', '900']);
});

test('calicoctl node prints where the API is, as in 2015', () => {
  const port = f.proxyHost.split(':').pop();
  assert.equal(nodeOut, `Docker Remote API is on port ${port}. Run\n\nexport DOCKER_HOST=localhost:${port}\n\nbefore using \`docker run\` for Calico networking.\n`);
  const log = fs.readFileSync(nodeLog, 'utf8');
  assert.match(log, new RegExp(`listening on tcp://127\\.0\\.0\\.1:${port}, forwarding to Docker at ${f.d.host.replace(/[/.]/g, '\\$&')}`));
});

test('1: docker version and info, API version negotiated (no fallback to 1.24)', async () => {
  await compare(f, 'version', ['version']);
  // dockerd lists runtimes from a Go map: their order differs from call to call, directly too.
  const sortRuntimes = (s: string) => s.replace(/^( Runtimes:)(.*)$/m, (_m, k: string, v: string) => `${k} ${v.trim().split(/\s+/).sort().join(' ')}`);
  await compare(f, 'info', ['info'], {}, sortRuntimes);
  const v = await f.proxied(['version', '--format', '{{.Client.APIVersion}} {{.Server.APIVersion}}']);
  assert.equal(v.stdout.trim(), '1.41 1.41');
});

test('2: HEAD and GET /_ping carry the same headers', async () => {
  const hdrs = (r: RunResult) =>
    r.stdout.split('\r\n').slice(1).filter((l) => l && !/^(date|connection|keep-alive):/i.test(l)).sort();
  const sock = f.d.socket;
  const port = f.proxyHost.split(':').pop();
  const direct = await runOk('curl', ['-sI', '--unix-socket', sock, 'http://x/_ping']);
  const proxied = await runOk('curl', ['-sI', `http://127.0.0.1:${port}/_ping`]);
  assert.deepEqual(hdrs(proxied), hdrs(direct));
  assert.ok(hdrs(proxied).some((h) => h.startsWith('Api-Version: 1.41')));
  assert.equal((await runOk('curl', ['-s', `http://127.0.0.1:${port}/_ping`])).stdout, 'OK');
});

test('3: versioned and unversioned create are both intercepted; pass, forward and reply reach the docker CLI', async () => {
  const port = seamHost.split(':').pop();
  for (const p of ['/containers/create', '/v1.41/containers/create']) {
    const r = await runOk('curl', ['-s', '-X', 'POST', '-H', 'Content-Type: application/json', '-d', `{"Image":"${f.image}","Cmd":["true"]}`, `http://127.0.0.1:${port}${p}`]);
    assert.match(r.stdout, /"Id":"[0-9a-f]{64}"/);
  }
  assert.deepEqual(seamSeen.slice(0, 2), [{ path: '/containers/create', apiVersion: undefined }, { path: '/containers/create', apiVersion: '1.41' }]);
  // pass: the CLI's create reaches dockerd untouched, the run behaves as directly.
  const direct = await f.direct(['run', '--rm', '-e', 'A=1', f.image, 'sh', '-c', 'echo $A']);
  const viaSeam = await f.d.docker(['run', '--rm', '-e', 'A=1', f.image, 'sh', '-c', 'echo $A'], { host: seamHost });
  assertSame('run through a passing interceptor', direct, viaSeam);
  // forward: the rewritten body is what dockerd created.
  const fwd = await f.d.docker(['run', '--rm', '-e', 'SEAM=label', f.image, 'true'], { host: seamHost });
  assert.equal(fwd.code, 0, fwd.stderr);
  await f.d.docker(['create', '--name', 'seamlabel', '-e', 'SEAM=label', f.image, 'true'], { host: seamHost });
  assert.equal((await f.direct(['inspect', '-f', '{{.Config.Labels.seam}}', 'seamlabel'])).stdout.trim(), 'forwarded');
  // reply: the CLI prints the message with Docker's error shape and exits 125, like any daemon error.
  const refused = await f.d.docker(['run', '--rm', '-e', 'SEAM=refuse', f.image, 'true'], { host: seamHost });
  assert.equal(refused.code, 125);
  assert.match(refused.stderr, /Error response from daemon: refused by the test interceptor: SEAM=refuse/);
});

test('4: more than 64 KiB in one chunk (ps -a --no-trunc, images -a)', async () => {
  const big = 'x'.repeat(100 * 1024);
  await runOk('docker', ['-H', f.d.host, 'create', '--name', 'biglabel', '--label', `big=${big}`, f.image, 'true']);
  // Two labels: the Dockerfile parser behind --change refuses lines over 64 KiB.
  const half = 'y'.repeat(60 * 1024);
  await runOk('docker', ['-H', f.d.host, 'commit', '--change', `LABEL a=${half}`, '--change', `LABEL b=${half}`, 'biglabel', 'calico-test/biglabel:1']);
  const ps = await compare(f, 'ps -a --no-trunc', ['ps', '-a', '--no-trunc', '--format', '{{.Names}} {{.Labels}}']);
  assert.ok(ps.proxied.stdout.length > 100 * 1024);
  const images = await compare(f, 'images -a', ['images', '-a', '--no-trunc']);
  assert.match(images.proxied.stdout, /calico-test\/biglabel/);
  await compare(f, 'inspect big image', ['image', 'inspect', 'calico-test/biglabel:1']);
});

test('25: logs -f streams the first line at once, survives an idle spell, ends when the container stops', async () => {
  const id = (await f.direct(['run', '-d', f.image, 'sh', '-c', 'echo first; sleep 5; echo second'])).stdout.trim();
  const live = spawn('docker', ['-H', f.proxyHost, 'logs', '-f', id]);
  let out = '';
  live.stdout.on('data', (c) => (out += c));
  const direct = f.direct(['logs', '-f', id]);
  await waitFor('first log line through the proxy while the container still runs', async () => out.includes('first'), 4000);
  assert.ok(!out.includes('second'));
  const code = await new Promise((r) => live.on('close', r));
  assert.equal(code, 0);
  assert.equal(out, 'first\nsecond\n');
  assert.equal((await direct).stdout, out);
});

test('26: events: live, and a closed client lets go of the upstream connection', async () => {
  const since = Math.floor(Date.now() / 1000) - 1;
  const ev = spawn('docker', ['-H', seamHost, 'events', '--filter', 'type=container', '--format', '{{.Action}} {{.Actor.Attributes.name}}']);
  let out = '';
  ev.stdout.on('data', (c) => (out += c));
  await sleep(500);
  await f.direct(['create', '--name', 'evtest', f.image, 'true']);
  await waitFor('the create event through the proxy', async () => out.includes('create evtest'), 10000);
  assert.ok(seamProxy.upstreamRunning >= 1);
  ev.kill('SIGINT');
  await new Promise((r) => ev.on('close', r));
  await waitFor('the proxy to close its /events call to dockerd', async () => seamProxy.upstreamRunning === 0, 10000);
  const until = Math.floor(Date.now() / 1000) + 1;
  await sleep(1500);
  await compare(f, 'events since/until', ['events', '--since', String(since), '--until', String(until), '--filter', 'container=evtest']);
});

test('27: docker stats streams an update about every second', async () => {
  const count = async (host: string) => {
    const s = spawn('docker', ['-H', host, 'stats', '--format', '{{.Name}}', 'cx']);
    let out = '';
    s.stdout.on('data', (c) => (out += c));
    await sleep(4500);
    s.kill('SIGKILL');
    await new Promise((r) => s.on('close', r));
    return out.split('cx').length - 1;
  };
  const [d, p] = await Promise.all([count(f.d.host), count(f.proxyHost)]);
  assert.ok(p >= 2, `only ${p} updates through the proxy in 4.5 s (directly: ${d})`);
});

test('28: foreground run waits for the exit; run -d then docker wait', async () => {
  const r = await compare(f, 'foreground sleep', ['run', '--rm', f.image, 'sh', '-c', 'sleep 3; echo woke']);
  assert.equal(r.proxied.stdout, 'woke\n');
  const id = (await f.proxied(['run', '-d', f.image, 'sh', '-c', 'sleep 2; exit 7'])).stdout.trim();
  const w = await f.proxied(['wait', id]);
  assert.equal(w.stdout.trim(), '7');
});

test('29: pull from an unreachable registry fails the same way (no registry on this machine)', async () => {
  await compare(f, 'pull unreachable', ['pull', '127.0.0.1:1/nosuch/image:1'], {}, maskIds);
});

test('30: classic build streams a large context without buffering it (proxy RSS stays flat)', async () => {
  const ctx = path.join(dir, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${f.image}\nRUN echo built-here\n`);
  const mib = 384;
  await runOk('sh', ['-c', `head -c ${mib}M /dev/zero > ${path.join(ctx, 'blob')}`]);
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${node.pid}/status`, 'utf8'))![1]) / 1024;
  const base = rss();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 50);
  const env = { ...process.env, DOCKER_BUILDKIT: '0' };
  const normalize = (s: string) => maskIds(s).replace(/DEPRECATED:[^\n]*\n(\s+[^\n]*\n)*/g, '');
  try {
    await compare(f, 'classic build', (via) => ['build', '--no-cache', '-t', `calico-test/built-${via}`, ctx], { env }, (s) => normalize(s).replace(/built-(direct|proxy)/g, 'built-X'));
  } finally {
    clearInterval(sampler);
  }
  assert.ok(peak - base < 64, `proxy RSS grew ${Math.round(peak - base)} MiB for a ${mib} MiB build context`);
  // BuildKit: this machine's CLI has no buildx, so the CLI refuses before any API call, the same both ways.
  await compare(f, 'buildkit build', ['build', ctx], { env: { ...process.env, DOCKER_BUILDKIT: '1' } });
});

test('31: BuildKit /session (h2c upgrade, repeated Grpc-Method headers) gets the same answer', async () => {
  const port = f.proxyHost.split(':').pop();
  const hdr = ['-H', 'Upgrade: h2c', '-H', 'Connection: Upgrade', '-H', 'X-Docker-Expose-Session-Uuid: u1', '-H', 'X-Docker-Expose-Session-Name: n',
    '-H', 'X-Docker-Expose-Session-Sharedkey: k', '-H', 'X-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.FileSync/DiffCopy',
    '-H', 'X-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.Auth/Credentials'];
  const status = async (target: string[]) => {
    const r = await run('curl', ['-s', '-i', '--max-time', '3', '-X', 'POST', ...hdr, ...target]);
    return r.stdout.split('\r\n')[0];
  };
  const d = await status(['--unix-socket', f.d.socket, 'http://x/session']);
  const p = await status([`http://127.0.0.1:${port}/session`]);
  assert.equal(p, d);
  assert.match(p, /^HTTP\/1\.1 101 /);
});

test('32: docker cp in and out (HEAD stat header, tar streams)', async () => {
  const src = path.join(dir, 'cpdir');
  fs.mkdirSync(src);
  await runOk('sh', ['-c', `head -c 20M /dev/urandom > ${src}/blob; echo hello > ${src}/small`]);
  await compare(f, 'cp in', (via) => ['cp', src, `cx:/tmp/in-${via}`]);
  const sums = await compare(f, 'sums', (via) => ['exec', 'cx', 'sh', '-c', `cd /tmp/in-${via} && md5sum blob small`]);
  assert.match(sums.proxied.stdout, /small/);
  await compare(f, 'cp out', (via) => ['cp', 'cx:/etc/hosts', path.join(dir, `hosts-${via}`)]);
  assert.equal(fs.readFileSync(path.join(dir, 'hosts-proxy'), 'utf8'), fs.readFileSync(path.join(dir, 'hosts-direct'), 'utf8'));
  await compare(f, 'cp stat of a missing path', ['cp', 'cx:/nonexistent', dir]);
});

test('33: save | load and export are byte-identical', async () => {
  const sha = (host: string, cmd: string) => runOk('sh', ['-c', `docker -H ${host} ${cmd} | sha256sum`]);
  assert.equal((await sha(f.proxyHost, `save ${f.image}`)).stdout, (await sha(f.d.host, `save ${f.image}`)).stdout);
  await runOk('docker', ['-H', f.d.host, 'create', '--name', 'exp', f.image, 'true']);
  assert.equal((await sha(f.proxyHost, 'export exp')).stdout, (await sha(f.d.host, 'export exp')).stdout);
  const tar = path.join(dir, 'img.tar');
  await runOk('docker', ['-H', f.d.host, 'save', '-o', tar, f.image]);
  await compare(f, 'load', ['load', '-i', tar]);
});

/**
 * The splice reads dockerd into one buffer per connection and must neither
 * overwrite bytes a slow client has not taken yet nor lose any: a reader
 * that pauses every 64 KiB gets exactly the bytes a fast one does.
 */
test('33b: a slow reader of a large answer (image save) gets the same bytes as direct', async () => {
  const hashOf = (opts: http.RequestOptions, slow: boolean) =>
    new Promise<{ sha: string; bytes: number }>((resolve, reject) => {
      const h = createHash('sha256');
      let bytes = 0;
      let sincePause = 0;
      http
        .get({ ...opts, path: `/images/${encodeURIComponent(f.image)}/get`, agent: false }, (res) => {
          assert.equal(res.statusCode, 200);
          res.on('data', (b: Buffer) => {
            h.update(b);
            bytes += b.length;
            sincePause += b.length;
            if (slow && sincePause >= 64 * 1024) {
              sincePause = 0;
              res.pause();
              setTimeout(() => res.resume(), 3);
            }
          });
          res.on('end', () => resolve({ sha: h.digest('hex'), bytes }));
          res.on('error', reject);
        })
        .on('error', reject);
    });
  // On a unix socket: its small buffers (unlike loopback TCP's) fill, so the
  // splice's writes to this reader do not all complete at once.
  const sock = path.join(dir, 'slow-reader.sock');
  const p = new DockerProxy({ listen: `unix://${sock}`, upstream: f.d.host }, silentLogger());
  await p.start();
  try {
    const direct = await hashOf({ socketPath: f.d.socket }, false);
    const proxied = await hashOf({ socketPath: sock }, true);
    assert.ok(direct.bytes > 1024 * 1024, `image save is ${direct.bytes} bytes: too small to fill the socket buffers`);
    assert.deepEqual(proxied, direct);
  } finally {
    await p.stop();
  }
});

test('34: 20 foreground runs, 20 logs -f and an events stream at once: no head-of-line blocking', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) ids.push((await f.direct(['run', '-d', f.image, 'sh', '-c', 'echo up; sleep 8'])).stdout.trim());
  const streams = [
    ...ids.map((id) => f.proxied(['logs', '-f', id])),
    f.proxied(['events', '--filter', 'type=container', '--since', '1s', '--until', `${Math.floor(Date.now() / 1000) + 12}`]),
  ];
  const runs = Array.from({ length: 20 }, (_, i) => f.proxied(['run', '--rm', f.image, 'sh', '-c', `sleep 3; echo run-${i}`]));
  await sleep(2000);
  // With 40+ calls held open, a new call must not queue behind them.
  const t0 = Date.now();
  const v = await f.proxied(['version', '--format', '{{.Server.APIVersion}}']);
  assert.equal(v.code, 0);
  assert.ok(Date.now() - t0 < 15000, `docker version took ${Date.now() - t0} ms with 41 streams open`);
  const done = await Promise.all(runs);
  done.forEach((r, i) => assert.deepEqual([r.code, r.stdout], [0, `run-${i}\n`], r.stderr));
  const logs = await Promise.all(streams);
  logs.slice(0, 20).forEach((r) => assert.deepEqual([r.code, r.stdout], [0, 'up\n']));
});

test('37: a non-loopback listener without TLS, or with --tls alone, is refused, saying how to require client certificates', async () => {
  const r = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--listen', 'tcp://0.0.0.0:23999', '--docker', f.d.host, '--state-dir', dir]);
  assert.equal(r.code, 2, 'a usage error');
  assert.match(r.stderr, /refusing to listen on tcp:\/\/0\.0\.0\.0:23999 without TLS.*--tlsverify --tlscacert=ca\.pem --tlscert=server-cert\.pem --tlskey=server-key\.pem/s);
  // --tls alone encrypts but accepts any client: refused off loopback too, naming --tlsverify.
  const tlsOnly = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--listen', 'tcp://0.0.0.0:23999', '--tls', '--tlscert', `${dir}/server-cert.pem`, '--tlskey', `${dir}/server-key.pem`, '--docker', f.d.host, '--state-dir', dir]);
  assert.equal(tlsOnly.code, 2);
  assert.match(tlsOnly.stderr, /refusing to listen on tcp:\/\/0\.0\.0\.0:23999 with --tls alone.*Use --tlsverify instead of --tls/s);
  const help = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--help']);
  assert.match(help.stdout, /--listen <ADDR>[\s\S]*default:\s+"tcp:\/\/127\.0\.0\.1:2377"/);
  const loop = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--listen', 'tcp://127.0.0.1:23998', '--docker', 'tcp://localhost:23998', '--state-dir', dir], { env: { ...process.env, DOCKER_HOST: 'tcp://127.0.0.1:23998' } });
  assert.equal(loop.code, 1);
  assert.match(loop.stderr, /own listener/);
  // DOCKER_HOST points at the proxy for the users; the node never takes its upstream from it.
  const port = await freePort();
  const n = spawn(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--listen', `tcp://127.0.0.1:${port}`, '--state-dir', dir], {
    env: { ...process.env, DOCKER_HOST: f.proxyHost },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  n.stderr!.on('data', (c) => (err += c));
  const exited = new Promise((r) => n.once('exit', r));
  try {
    await waitFor('the startup log line', async () => err.includes('forwarding to Docker at'), 20000);
    assert.match(err, /forwarding to Docker at unix:\/\/\/var\/run\/docker\.sock/);
  } finally {
    n.kill('SIGTERM');
    await exited;
  }
});

test('38: one debug line per request; no X-Registry-Auth, no container Env in the log', async () => {
  const port = f.proxyHost.split(':').pop();
  await f.proxied(['run', '--rm', '-e', 'DB_PASSWORD=hunter2-secret', f.image, 'true']);
  await run('curl', ['-s', '-X', 'POST', '-H', 'X-Registry-Auth: c2VjcmV0LXJlZ2lzdHJ5LXRva2Vu', `http://127.0.0.1:${port}/images/create?fromImage=127.0.0.1:1/x&tag=1`]);
  await sleep(300);
  const log = fs.readFileSync(nodeLog, 'utf8');
  assert.match(log, /"msg":"POST \/v1\.41\/containers\/create 201"/);
  assert.match(log, /"msg":"POST \/images\/create\?fromImage=127\.0\.0\.1:1\/x&tag=1 \d+"/);
  assert.doesNotMatch(log, /hunter2-secret/);
  assert.doesNotMatch(log, /c2VjcmV0LXJlZ2lzdHJ5LXRva2Vu/);
});

test('calicoctl node --detach: pid file, log file, stops cleanly on SIGTERM', async () => {
  const state = path.join(dir, 'detached');
  const port = await freePort();
  const r = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--detach', '--listen', `tcp://127.0.0.1:${port}`, '--docker', f.d.host, '--state-dir', state], { timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`export DOCKER_HOST=localhost:${port}`));
  const pid = Number(fs.readFileSync(path.join(state, 'calico-node.pid'), 'utf8'));
  onTeardown('detached node', () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  const v = await f.d.docker(['version', '--format', '{{.Server.APIVersion}}'], { host: `tcp://127.0.0.1:${port}` });
  assert.equal(v.stdout.trim(), '1.41');
  const again = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--proxy-only', '--detach', '--listen', `tcp://127.0.0.1:${port}`, '--docker', f.d.host, '--state-dir', state]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already running \(pid \d+\)/);
  process.kill(pid, 'SIGTERM');
  await waitFor('the detached node to exit', async () => { try { process.kill(pid, 0); return false; } catch { return true; } }, 15000);
  assert.ok(!fs.existsSync(path.join(state, 'calico-node.pid')), 'pid file removed on a clean stop');
  assert.match(fs.readFileSync(path.join(state, 'calico-node.log'), 'utf8'), /SIGTERM: stopping the node/);
});
