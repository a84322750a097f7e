import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { DockerProxy } from '../../src/proxy';
import type { Interceptor } from '../../src/proxy';
import { silentLogger } from '../../src/log/logger';

// The splice must stay byte-exact: a scripted upstream that answers raw
// bytes and reports what it received.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proxy-bytes-'));
const sock = path.join(dir, 'up.sock');
const heads: string[] = [];
const bodies: number[] = [];
const hashes: string[] = [];
/** The upstream reads a little at a time, so that the proxy's writes to it queue. */
let slowUpstream = false;
let getCount503 = 0;
let upstream: net.Server;
let proxy: DockerProxy;
let port = 0;
let claimed: string[] = [];

before(async () => {
  upstream = net.createServer((s) => {
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let need = -1;
    let head = '';
    s.on('data', (c: Buffer) => {
      if (slowUpstream) {
        s.pause();
        setTimeout(() => s.resume(), 1);
      }
      buf = Buffer.concat([buf, c]);
      for (;;) {
        if (need < 0) {
          const i = buf.indexOf('\r\n\r\n');
          if (i < 0) return;
          head = buf.subarray(0, i).toString('latin1');
          buf = buf.subarray(i + 4);
          const m = /\r\ncontent-length: (\d+)/i.exec(head);
          need = m ? Number(m[1]) : 0;
        }
        if (buf.length < need) return;
        hashes.push(crypto.createHash('sha256').update(buf.subarray(0, need)).digest('hex'));
        buf = buf.subarray(need);
        heads.push(head);
        bodies.push(need);
        need = -1;
        answer(s, head);
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(sock, r));
  const icp: Interceptor = {
    name: 'start',
    matches: (m, p) => m === 'POST' && /^\/containers\/[^/]+\/start$/.test(p),
    onRequest: async (ctx) => {
      claimed.push(ctx.path);
      return { action: 'reply', status: 409, message: `claimed ${ctx.path}` };
    },
  };
  proxy = new DockerProxy({ listen: 'tcp://127.0.0.1:0', upstream: `unix://${sock}`, interceptors: [icp] }, silentLogger());
  await proxy.start();
  const a = proxy.address;
  port = a.kind === 'tcp' ? a.port : 0;
});

function answer(s: net.Socket, head: string): void {
  const line = head.split('\r\n')[0];
  if (line.startsWith('GET /unavailable')) {
    getCount503++;
    s.write('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n');
  } else if (line.startsWith('GET /events')) {
    s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    // ...and nothing more until the client goes away.
  } else {
    const body = `saw ${line}`;
    s.write(`HTTP/1.1 200 OK\r\nX-Rep: a\r\nX-Rep: b\r\nApi-Version: 1.41\r\nDocker-Experimental: false\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  }
}

after(async () => {
  await proxy.stop();
  await new Promise((r) => upstream.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

function exchange(request: string | Buffer, untilMs?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const got: Buffer[] = [];
    s.on('data', (c) => got.push(c));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    s.write(request);
    if (untilMs) setTimeout(() => s.destroy(), untilMs);
  });
}

test('repeated response headers stay separate lines, names keep their case', async () => {
  const out = await exchange('GET /info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 200 OK\r\nX-Rep: a\r\nX-Rep: b\r\nApi-Version: 1\.41\r\nDocker-Experimental: false\r\nContent-Length: 22\r\n/);
  assert.ok(out.endsWith('\r\n\r\nsaw GET /info HTTP/1.1'), JSON.stringify(out));
});

test('targets a URL parser would refuse or rewrite still reach dockerd verbatim', async () => {
  for (const target of ['/x%2Fy?a=%zz&b', '/v1.41/containers/json?all=1&filters=%7B%7D', '/containers/a%20b/json']) {
    const out = await exchange(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    assert.ok(out.endsWith(`saw GET ${target} HTTP/1.1`), `${target}: ${JSON.stringify(out)}`);
  }
});

test('targets dockerd would redirect (unclean) or refuse (bad percent-encoding) are refused 400 before anything sees them', async () => {
  claimed = [];
  for (const target of ['//containers/json', '/containers/../info', '/a%zz', '/v1.41/containers/%zz/start']) {
    const out = await exchange(`POST ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    assert.match(out, /^HTTP\/1\.1 400 Bad Request\r\n[^]*"message":"calico proxy: request path/, `${target}: ${JSON.stringify(out)}`);
  }
  assert.deepEqual(claimed, []);
});

test('bodies of any type stream unparsed, beyond the intercepted-body limit', async () => {
  const big = 3 * 1024 * 1024;
  for (const type of ['text/plain', 'application/json', 'application/x-tar', ';;not a type']) {
    const before = bodies.length;
    const out = await exchange(Buffer.concat([Buffer.from(`POST /build HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${type}\r\nConnection: close\r\nContent-Length: ${big}\r\n\r\n`), Buffer.alloc(big, 'x')]));
    assert.match(out, /^HTTP\/1\.1 200 OK\r\n/, type);
    assert.equal(bodies[before], big, type);
  }
});

test('a GET answered 503 is passed on, not retried', async () => {
  getCount503 = 0;
  const out = await exchange('GET /unavailable HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.equal(getCount503, 1);
});

test('a client leaving a stream (events ^C) lets go of the upstream call', async () => {
  const out = await exchange('GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n', 300);
  assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
  assert.ok(out.endsWith('5\r\nhello\r\n'), JSON.stringify(out));
  for (let i = 0; i < 50 && proxy.upstreamRunning > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(proxy.upstreamRunning, 0);
});

test('uploads on one keep-alive connection reach a slow dockerd byte for byte (client reads share one buffer)', async () => {
  slowUpstream = true;
  const before = hashes.length;
  const one = crypto.randomBytes(8 * 1024 * 1024);
  const two = crypto.randomBytes(1024 * 1024);
  const c = net.connect(port, '127.0.0.1');
  let out = '';
  c.on('data', (b) => (out += b.toString('latin1')));
  const ended = new Promise((r) => c.on('end', r));
  const send = async (b: Buffer) => {
    // Segments of every size, so that reads end anywhere in heads and bodies.
    for (let at = 0; at < b.length; ) {
      const n = 1 + crypto.randomInt(200 * 1024);
      if (!c.write(b.subarray(at, at + n))) await new Promise((r) => c.once('drain', r));
      at += n;
    }
  };
  await send(Buffer.concat([Buffer.from(`PUT /containers/x/archive HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${one.length}\r\n\r\n`), one]));
  await send(Buffer.concat([Buffer.from(`PUT /containers/y/archive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: ${two.length}\r\n\r\n`), two]));
  await ended;
  slowUpstream = false;
  assert.deepEqual([...out.matchAll(/saw (\S+ \S+)/g)].map((m) => m[1]), ['PUT /containers/x/archive', 'PUT /containers/y/archive']);
  const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
  assert.deepEqual(hashes.slice(before), [sha(one), sha(two)]);
});
