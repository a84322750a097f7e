import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import http from 'node:http';
import tls from 'node:tls';
import { makeTestCerts } from '../harness/certs';
import { DockerProxy } from '../../src/proxy';
import type { Interceptor, UpstreamOutcome } from '../../src/proxy';
import { formatAddress } from '../../src/listen/address';
import { silentLogger } from '../../src/log/logger';

// The proxy's plumbing against a scripted upstream on a unix socket: exact
// bytes in, exact bytes out. (The real dockerd and docker CLI are in test/e2e.)

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proxy-plumbing-'));
const upstreamSock = path.join(dir, 'up.sock');
interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  body: Buffer;
}
const seen: Seen[] = [];
const upgrades: { rawHeaders: string[]; head: Buffer }[] = [];
let upstream: http.Server;
const stoppers: (() => Promise<void>)[] = [];

before(async () => {
  upstream = http.createServer({ insecureHTTPParser: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) });
      if (req.url === '/_ping') {
        res.writeHead(200, { 'Api-Version': '1.41', 'Ostype': 'linux', 'Docker-Experimental': 'false', 'Content-Length': '2' });
        res.end(req.method === 'HEAD' ? undefined : 'OK');
      } else if (req.url!.startsWith('/containers/x/wait')) {
        // dockerd flushes /wait headers at once and answers at container exit.
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.flushHeaders();
        setTimeout(() => res.end('{"StatusCode":0}\n'), 800);
      } else if (req.url === '/images/json') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(Buffer.alloc(3 * 1024 * 1024, 'a')); // one large chunk
      } else if (req.url === '/raw') {
        // A hijack without Upgrade: dockerd answers 200 with no framing and closes.
        res.socket!.write('HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nraw bytes');
        res.socket!.end();
      } else if (req.url!.includes('/containers/create')) {
        res.writeHead(201, { 'Content-Type': 'application/json', 'Api-Version': '1.41' });
        res.end('{"Id":"abc","Warnings":[]}\n');
      } else {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end('{"message":"page not found"}\n');
      }
    });
  });
  upstream.on('upgrade', (req, sock: net.Socket, head: Buffer) => {
    upgrades.push({ rawHeaders: req.rawHeaders, head });
    sock.allowHalfOpen = true;
    if (req.url!.includes('/exec/gone/start')) {
      sock.end('HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n{"message":"container is stopped"}');
      return;
    }
    sock.write('HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n');
    // Echo stdin; after the client's EOF, still write, then close (output after stdin EOF).
    const got: Buffer[] = [head];
    sock.on('data', (c: Buffer) => got.push(c));
    sock.on('end', () => {
      setTimeout(() => sock.end(`echo:${Buffer.concat(got).toString()}|after-eof`), 100);
    });
  });
  await new Promise<void>((r) => upstream.listen(upstreamSock, r));
});

after(async () => {
  for (const s of stoppers) await s();
  upstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function startProxy(interceptors: Interceptor[] = [], extra: { tls?: { cert: string; key: string; ca?: string; verify: boolean } } = {}, up = `unix://${upstreamSock}`) {
  const p = new DockerProxy({ listen: 'tcp://127.0.0.1:0', upstream: up, interceptors, ...extra }, silentLogger());
  await p.start();
  stoppers.push(() => p.stop());
  const a = p.address;
  return { p, port: a.kind === 'tcp' ? a.port : 0 };
}

/** Raw request over TCP; resolves with every byte the proxy sent until it closed (or `untilMs`). */
function rawExchange(port: number, request: string | Buffer, opts: { endAfterWrite?: boolean; untilMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const got: Buffer[] = [];
    s.on('data', (c) => got.push(c));
    s.on('error', reject);
    s.on('end', () => s.end());
    s.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    s.write(request);
    if (opts.endAfterWrite) s.end();
    if (opts.untilMs) setTimeout(() => s.destroy(), opts.untilMs);
  });
}

function fetchLocal(port: number, pth: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}) {
  return new Promise<{ status: number; rawHeaders: string[]; body: Buffer; headersAt: number; endAt: number }>((resolve, reject) => {
    const t0 = Date.now();
    const req = http.request({ host: '127.0.0.1', port, path: pth, method: init.method ?? 'GET', headers: init.headers }, (res) => {
      const headersAt = Date.now() - t0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks), headersAt, endAt: Date.now() - t0 }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

test('HEAD and GET /_ping keep every header (Api-Version) and HEAD has no body', async () => {
  const { port } = await startProxy();
  const head = await rawExchange(port, 'HEAD /_ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(head, /\r\nApi-Version: 1\.41\r\n/);
  assert.match(head, /\r\nOstype: linux\r\n/);
  assert.match(head, /\r\nContent-Length: 2\r\n/);
  assert.ok(head.endsWith('\r\n\r\n'), 'HEAD response carries no body');
  const get = await fetchLocal(port, '/_ping');
  assert.equal(get.body.toString(), 'OK');
});

test('/wait headers reach the client before the body (no foreground docker run deadlock)', async () => {
  const { port } = await startProxy();
  const r = await fetchLocal(port, '/containers/x/wait?condition=next-exit', { method: 'POST' });
  assert.equal(r.status, 200);
  assert.ok(r.headersAt < r.endAt - 400, `headers at ${r.headersAt} ms, body at ${r.endAt} ms`);
});

test('one large chunk passes intact; repeated request headers stay separate lines', async () => {
  const { port } = await startProxy();
  const r = await fetchLocal(port, '/images/json');
  assert.equal(r.body.length, 3 * 1024 * 1024);
  await rawExchange(port, 'GET /info HTTP/1.1\r\nHost: localhost\r\nX-Rep: a\r\nX-Rep: b\r\nX-Registry-Auth: eyJzZWNyZXQiOjF9\r\nConnection: close\r\n\r\n');
  const s = seen.find((x) => x.url === '/info')!;
  const reps = s.rawHeaders.filter((_, i) => i % 2 === 1 && (s.rawHeaders[i - 1] === 'X-Rep'));
  assert.deepEqual(reps, ['a', 'b']);
  assert.ok(s.rawHeaders.includes('eyJzZWNyZXQiOjF9'), 'X-Registry-Auth reaches dockerd unchanged');
});

test('a close-delimited 200 (hijack without Upgrade) stays unframed', async () => {
  const { port } = await startProxy();
  const out = await rawExchange(port, 'POST /raw HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
  assert.doesNotMatch(out, /Transfer-Encoding/i);
  assert.ok(out.endsWith('\r\n\r\nraw bytes'), JSON.stringify(out));
});

test('hijack: 101 passed raw, head bytes forwarded, output after the client half-closes', async () => {
  const { port } = await startProxy();
  // The Jenkins attach connector: LF-only lines, Host: docker.sock, a stray "\n" after the body.
  const body = '{"Detach":false,"Tty":false}';
  const req = `POST /v1.32/exec/abc/start HTTP/1.1\nHost: docker.sock\nContent-Type: application/json\nUpgrade: tcp\nConnection: Upgrade\nX-Rep: 1\nX-Rep: 2\nContent-Length: ${body.length}\n\n${body}\n`;
  const out = await rawExchange(port, req + 'stdin', { endAfterWrite: true });
  assert.ok(out.startsWith('HTTP/1.1 101 UPGRADED\r\n'), out);
  // What came with the head and body (the stray "\n", "stdin") is dropped after the 101, as dockerd drops what it read with the head.
  assert.ok(out.endsWith(`echo:${body}|after-eof`), JSON.stringify(out));
  const u = upgrades.at(-1)!;
  assert.deepEqual(u.rawHeaders.filter((_, i) => u.rawHeaders[i - 1] === 'X-Rep'), ['1', '2']);
  assert.ok(u.rawHeaders.includes('docker.sock'));
});

test('hijack error (409) reaches the client as dockerd sent it', async () => {
  const { port } = await startProxy();
  const out = await rawExchange(port, 'POST /exec/gone/start HTTP/1.1\r\nHost: localhost\r\nUpgrade: tcp\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\n{}', { endAfterWrite: true });
  assert.equal(out, 'HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n{"message":"container is stopped"}');
});

test('hijack over TLS with client certificates: half-close keeps the output; no cert is refused', async () => {
  const certs = makeTestCerts(fs.mkdtempSync(path.join(dir, 'certs-')));
  const { port } = await startProxy([], { tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca, verify: true } });
  const exchange = (withCert: boolean) =>
    new Promise<string>((resolve) => {
      const s = tls.connect({
        host: '127.0.0.1', port, ca: fs.readFileSync(certs.ca), servername: 'localhost', allowHalfOpen: true,
        ...(withCert ? { cert: fs.readFileSync(certs.clientCert), key: fs.readFileSync(certs.clientKey) } : {}),
      } as tls.ConnectionOptions);
      const got: Buffer[] = [];
      s.on('data', (c) => got.push(c));
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve(Buffer.concat(got).toString()));
      s.on('secureConnect', () => {
        s.write('POST /containers/abc/attach?stdin=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: tcp\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\nhello');
        setTimeout(() => s.end(), 100);
      });
    });
  const ok = await exchange(true);
  assert.ok(ok.startsWith('HTTP/1.1 101 '), ok);
  // "hello" came in the head's segment: dropped after the 101, as dockerd drops it.
  assert.ok(ok.endsWith('echo:|after-eof'), JSON.stringify(ok));
  const refused = await exchange(false);
  // Not `includes('101')`: the refusal's OpenSSL error text carries a hex address that may hold those digits.
  assert.doesNotMatch(refused, /HTTP\/1\.1 101/, refused);
});

test('seam: pass forwards the original bytes, forward the new body, reply answers in Docker error shape', async () => {
  const outcomes: UpstreamOutcome[] = [];
  const icp: Interceptor = {
    name: 'test-create',
    matches: (m, pth) => m === 'POST' && pth === '/containers/create',
    async onRequest(ctx, body) {
      const j = JSON.parse(body.toString());
      if (j.Image === 'refuse') return { action: 'reply', status: 400, message: `refused ${ctx.apiVersion ?? 'unversioned'}` };
      if (j.Image === 'rewrite') return { action: 'forward', body: Buffer.from('{"Image":"rewritten"}'), state: 'S' };
      return { action: 'pass' };
    },
    async onResponse(_ctx, outcome, state) {
      outcomes.push(outcome);
      if (state === 'S' && 'status' in outcome) return { status: outcome.status, body: Buffer.from('{"Id":"replaced"}') };
    },
  };
  const { port } = await startProxy([icp]);
  const original = '{ "Image" : "busybox",  "Env":["A=1"] }';
  const r1 = await fetchLocal(port, '/v1.41/containers/create?name=a', { method: 'POST', body: original, headers: { 'Content-Type': 'application/json' } });
  assert.equal(r1.status, 201);
  assert.equal(seen.at(-1)!.body.toString(), original, 'pass: byte-identical body');
  assert.equal(seen.at(-1)!.url, '/v1.41/containers/create?name=a');
  assert.ok(r1.rawHeaders.includes('Api-Version'), "dockerd's headers kept");

  // A chunked client body is rewritten with a Content-Length and no Transfer-Encoding.
  const chunked = `POST /containers/create HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n15\r\n{"Image":"rewrite"}  \r\n0\r\n\r\n`;
  const r2 = await rawExchange(port, chunked);
  assert.match(r2, /^HTTP\/1\.1 201 /);
  assert.ok(r2.endsWith('{"Id":"replaced"}'), r2);
  const s2 = seen.at(-1)!;
  assert.equal(s2.body.toString(), '{"Image":"rewritten"}');
  assert.ok(!s2.rawHeaders.map((h) => h.toLowerCase()).includes('transfer-encoding'));
  assert.equal(s2.rawHeaders[s2.rawHeaders.findIndex((h) => h.toLowerCase() === 'content-length') + 1], '21');

  const before = seen.length;
  const r3 = await fetchLocal(port, '/v1.40/containers/create', { method: 'POST', body: '{"Image":"refuse"}' });
  assert.equal(r3.status, 400);
  assert.deepEqual(JSON.parse(r3.body.toString()), { message: 'refused 1.40' });
  assert.equal(seen.length, before, 'reply never reaches dockerd');
  assert.equal(outcomes.length, 2);
});

test('seam: onResponse sees dockerd failures, and a throwing onResponse does not break the answer', async () => {
  const outcomes: UpstreamOutcome[] = [];
  const mk = (throws: boolean): Interceptor => ({
    name: 'test',
    matches: (m, pth) => m === 'POST' && pth === '/containers/create',
    onRequest: async () => ({ action: 'pass' }),
    async onResponse(_c, o) {
      outcomes.push(o);
      if (throws) throw new Error('boom');
    },
  });
  const down = await startProxy([mk(false)], {}, `unix://${path.join(dir, 'nobody.sock')}`);
  const r = await fetchLocal(down.port, '/containers/create', { method: 'POST', body: '{}' });
  assert.equal(r.status, 502);
  assert.match(JSON.parse(r.body.toString()).message, /cannot reach Docker at unix:\/\/.*nobody\.sock/);
  assert.ok('error' in outcomes[0]);
  const up = await startProxy([mk(true)]);
  const r2 = await fetchLocal(up.port, '/containers/create', { method: 'POST', body: '{}' });
  assert.equal(r2.status, 201);
  assert.equal(r2.body.toString(), '{"Id":"abc","Warnings":[]}\n');
});

test('the proxy refuses to start when the upstream leads back to itself', async () => {
  const probe = new DockerProxy({ listen: 'tcp://127.0.0.1:0', upstream: 'tcp://127.0.0.1:1' }, silentLogger());
  await probe.start();
  const port = (probe.address as { port: number }).port;
  await probe.stop();
  // Same port under another spelling of 127.0.0.1 that the static check does not know: only the startup probe can tell.
  const p = new DockerProxy({ listen: `tcp://127.0.0.1:${port}`, upstream: `tcp://127.1:${port}` }, silentLogger());
  await assert.rejects(p.start(), /leads back to this proxy|own listener/);
  void formatAddress;
});


test('splice: one connection to dockerd per client connection; an intercepted call in between goes to the interceptor', async () => {
  const claimed: string[] = [];
  const icp: Interceptor = {
    name: 'test-create',
    matches: (m, p) => m === 'POST' && p === '/containers/create',
    onRequest: async (ctx) => {
      claimed.push(ctx.path);
      return { action: 'pass' };
    },
  };
  const { port } = await startProxy([icp]);
  const sockets: net.Socket[] = [];
  const onReq = (req: http.IncomingMessage) => {
    if (req.url === '/_ping') sockets.push(req.socket);
  };
  upstream.on('request', onReq);
  try {
    const body = '{"Image":"busybox"}';
    const out = await rawExchange(
      port,
      'GET /_ping HTTP/1.1\r\nHost: localhost\r\n\r\n' +
        `POST /v1.41/containers/create HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
        'GET /_ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
    );
    // Three answers, in order, on the one client connection.
    const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '201', '200'], out);
    assert.match(out, /\{"Id":"abc","Warnings":\[\]\}\n/);
    assert.deepEqual(claimed, ['/containers/create']);
    assert.equal(sockets.length, 2);
    assert.equal(sockets[0], sockets[1], 'the two spliced calls used different connections to dockerd');
  } finally {
    upstream.off('request', onReq);
  }
});

test('splice: a malformed head is answered 400 in Docker\'s shape; an LF-only head reaches dockerd', async () => {
  const { port } = await startProxy();
  const bad = await rawExchange(port, 'this is not http\r\n\r\n');
  assert.match(bad, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(bad, /\{"message":"calico proxy: malformed HTTP request: /);
  const lf = await rawExchange(port, 'GET /_ping HTTP/1.1\nHost: docker.sock\nConnection: close\n\n');
  assert.match(lf, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nOK$/);
});

test('splice: two client connections keep two connections to dockerd (not a shared pool)', async () => {
  const { port } = await startProxy();
  const sockets: net.Socket[] = [];
  const onReq = (req: http.IncomingMessage) => {
    if (req.url === '/_ping') sockets.push(req.socket);
  };
  upstream.on('request', onReq);
  const open = () => net.connect({ port, host: '127.0.0.1' });
  const ping = (s: net.Socket) =>
    new Promise<void>((resolve) => {
      let got = '';
      const onData = (c: Buffer) => {
        got += c.toString('latin1');
        if (got.endsWith('\r\n\r\nOK')) {
          s.off('data', onData);
          resolve();
        }
      };
      s.on('data', onData);
      s.write('GET /_ping HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
  const a = open();
  const b = open();
  try {
    await ping(a);
    await ping(b);
    await ping(a);
    assert.equal(sockets.length, 3);
    assert.equal(sockets[0], sockets[2], 'client A changed its connection to dockerd');
    assert.notEqual(sockets[0], sockets[1], 'clients A and B shared a connection to dockerd');
  } finally {
    upstream.off('request', onReq);
    a.destroy();
    b.destroy();
  }
});
