import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { Connection } from '../../src/proxy/connection';
import type { CallRecord, ConnectionHooks, HeadDecision } from '../../src/proxy/call';
import type { Head } from '../../src/proxy/framing';
import type { Interceptor } from '../../src/proxy/interceptor';
import { decideRequest } from '../../src/proxy/request-head';
import { silentLogger } from '../../src/log/logger';

// The Connection state machine on raw byte sequences: the client is an
// in-memory stream fed exactly the segments a test chooses; dockerd is a
// scripted server on a unix socket that records every byte it receives.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proxy-connection-'));
const sock = path.join(dir, 'up.sock');
/** Per upstream connection: every byte received, and the byte count when each answer went. */
const upstreamConns: { got: Buffer[]; answeredAt: number[]; closed: boolean }[] = [];
let upstream: net.Server;

function received(i = upstreamConns.length - 1): string {
  return Buffer.concat(upstreamConns[i]?.got ?? []).toString('latin1');
}

before(async () => {
  upstream = net.createServer({ allowHalfOpen: true }, (s) => {
    const rec = { got: [] as Buffer[], answeredAt: [] as number[], closed: false };
    upstreamConns.push(rec);
    s.on('error', () => undefined);
    // The proxy letting go shows as our end (we are half-open capable).
    s.on('end', () => (rec.closed = true));
    let buf = Buffer.alloc(0);
    let total = 0;
    s.on('data', (c: Buffer) => {
      rec.got.push(c);
      total += c.length;
      buf = Buffer.concat([buf, c]);
      for (;;) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.subarray(0, i).toString('latin1');
        const line = head.split('\r\n')[0];
        if (line.includes('/switch') || (line.includes('/attach') && /\r\nupgrade:/i.test(head))) {
          // A 101: asked for (attach with Upgrade) or not (/switch). What follows is raw.
          buf = Buffer.alloc(0);
          s.write('HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nraw-out');
          return;
        }
        if (line.includes('/early')) {
          // Refused on its head, before the body: dockerd's 413 and close.
          s.end('HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
          return;
        }
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
        let end = i + 4 + (cl ? Number(cl[1]) : 0);
        if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
          const z = buf.indexOf('\r\n0\r\n\r\n', i + 2);
          if (z < 0) return;
          end = z + 7;
        }
        if (buf.length < end) return;
        const body = buf.subarray(i + 4, end).toString('latin1');
        buf = buf.subarray(end);
        const text = `saw ${line} ${body}`;
        const answer = () => {
          rec.answeredAt.push(total - buf.length);
          s.write(`HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
        };
        if (line.includes('/slow')) setTimeout(answer, 50);
        else answer();
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(sock, r));
});

after(async () => {
  await new Promise((r) => upstream.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Client {
  conn: Connection;
  out: () => string;
  /** Writes to the client so far. */
  writes: () => number;
  send: (b: string | Buffer) => void;
  end: () => void;
  records: CallRecord[];
  inflight: () => number;
  finished: Promise<void>;
}

/** The test's decision on a head; the framing and route are request-head.ts's, as in the proxy. */
type TestDecision = { action: 'forward' } | { action: 'refuse'; status: number; message: string } | { action: 'intercept'; interceptor: Interceptor };

function client(decide: (h: Head) => TestDecision = () => ({ action: 'forward' })): Client {
  const out: Buffer[] = [];
  let finish: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const d = new Duplex({
    allowHalfOpen: true,
    read() {},
    write(c: Buffer, _e, cb) {
      // A copy, as a socket's write is: the splice's dockerd reads are views of one buffer.
      out.push(Buffer.from(c));
      cb();
    },
    final(cb) {
      finish();
      cb();
    },
  });
  d.on('close', () => finish());
  const records: CallRecord[] = [];
  let inflight = 0;
  const hooks: ConnectionHooks = {
    docker: (onread) => net.connect({ path: sock, allowHalfOpen: true, onread }),
    dockerLabel: `unix://${sock}`,
    onHead: (buf, size): HeadDecision => {
      const r = decideRequest(buf, size);
      if (r.action === 'refuse') return r;
      const d = decide(r.head);
      return d.action === 'refuse' ? d : { ...d, request: r };
    },
    done: (r) => records.push(r),
    inflight: (n) => (inflight += n),
    log: silentLogger(),
  };
  const conn = new Connection(d, hooks);
  return {
    conn,
    out: () => Buffer.concat(out).toString('latin1'),
    writes: () => out.length,
    send: (b) => d.push(typeof b === 'string' ? Buffer.from(b, 'latin1') : b),
    end: () => d.push(null),
    records,
    inflight: () => inflight,
    finished,
  };
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, cond: () => boolean, ms = 2000): Promise<void> {
  for (const t0 = Date.now(); !cond(); await tick(5)) if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
}
const answers = (s: string) => [...s.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);

const POST = 'POST /v1.41/containers/x/start HTTP/1.1\r\nHost: docker\r\nContent-Length: 5\r\n\r\nhello';
const PING = 'GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n';

test('every segmentation of a request (and each byte on its own) reaches dockerd as the same bytes', async () => {
  const req = POST + PING;
  const cuts: number[][] = [];
  for (let i = 1; i < req.length; i++) cuts.push([i]);
  cuts.push([...Array(req.length - 1).keys()].map((i) => i + 1));
  for (const cut of cuts) {
    const before = upstreamConns.length;
    const c = client();
    let at = 0;
    for (const to of [...cut, req.length]) {
      c.send(req.slice(at, to));
      at = to;
      await tick();
    }
    await until(`two answers (cut ${cut.length > 1 ? 'every byte' : cut[0]})`, () => answers(c.out()).length === 2);
    assert.equal(upstreamConns.length, before + 1, 'one dockerd connection');
    assert.equal(received(), req, `cut at ${cut}`);
    assert.ok(c.out().endsWith('saw GET /_ping HTTP/1.1 '), c.out());
    assert.equal(c.conn.state, 'head');
    c.conn.close();
  }
});

test('states: head → body → answer → head; nothing read past a request before its answer', async () => {
  const c = client();
  const slow = 'POST /slow HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\r\n';
  c.send(slow.slice(0, 10));
  await tick(5);
  assert.equal(c.conn.state, 'head');
  c.send(slow.slice(10) + 'ab');
  await tick(5);
  assert.equal(c.conn.state, 'body');
  // The rest of the body and a pipelined request in one segment.
  c.send('cd' + PING);
  await tick(5);
  assert.equal(c.conn.state, 'answer');
  await until('both answers', () => answers(c.out()).length === 2);
  const up = upstreamConns.at(-1)!;
  assert.equal(up.answeredAt[0], slow.length + 4, 'dockerd had only the first request when it answered it');
  assert.equal(received(), slow + 'abcd' + PING);
  assert.equal(c.conn.state, 'head');
  assert.deepEqual(c.records.map((r) => [r.url, r.status, r.kind]), [['/slow', 200, 'splice'], ['/_ping', 200, 'splice']]);
  assert.equal(c.inflight(), 0);
  c.conn.close();
});

test('pipelined requests in one segment are answered in order on one dockerd connection', async () => {
  const c = client();
  const before = upstreamConns.length;
  c.send(PING + POST + 'GET /slow HTTP/1.1\r\nHost: d\r\n\r\n' + PING.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'));
  await c.finished;
  assert.deepEqual(answers(c.out()), ['200', '200', '200', '200']);
  const bodies = [...c.out().matchAll(/saw (\S+ \S+)/g)].map((m) => m[1]);
  assert.deepEqual(bodies, ['GET /_ping', 'POST /v1.41/containers/x/start', 'GET /slow', 'GET /_ping']);
  assert.equal(upstreamConns.length, before + 1);
});

test('an early answer (dockerd refuses on the head) reaches the client; the rest of the upload is dropped, not framed', async () => {
  const c = client();
  c.send('POST /early HTTP/1.1\r\nHost: d\r\nContent-Length: 100000\r\n\r\n' + 'x'.repeat(1000));
  await until('the 413', () => answers(c.out()).length === 1);
  assert.match(c.out(), /^HTTP\/1\.1 413 /);
  // The client goes on writing its body (and something that looks like a request): nothing of it is a request.
  c.send('x'.repeat(5000) + PING);
  c.end();
  await c.finished;
  assert.deepEqual(answers(c.out()), ['413']);
  assert.deepEqual(c.records.map((r) => r.status), [413]);
});

test('an aborted upload lets go of dockerd and counts the call out', async () => {
  const c = client();
  c.send('POST /build HTTP/1.1\r\nHost: d\r\nContent-Length: 1000000\r\n\r\n' + 'y'.repeat(70000));
  await until('dockerd to get the upload', () => received().length > 60000);
  const up = upstreamConns.at(-1)!;
  assert.equal(c.inflight(), 1);
  c.end(); // the client half-closes mid-body: it has left
  await until('dockerd side closed', () => up.closed);
  assert.equal(c.inflight(), 0);
  assert.deepEqual(c.records.map((r) => [r.url, r.status]), [['/build', 0]]);
  assert.equal(c.conn.state, 'closing');
});

test('refused on its head: Docker-shaped error, connection closed, nothing reaches dockerd', async () => {
  const before = upstreamConns.length;
  const c = client(() => ({ action: 'refuse', status: 403, message: 'calico proxy: no' }));
  c.send(PING + PING);
  await c.finished;
  assert.match(c.out(), /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*Connection: close\r\n\r\n\{"message":"calico proxy: no"\}\n$/);
  assert.equal(upstreamConns.length, before);
});

test('intercepted: a chunked body in pieces is decoded for the interceptor, passed on byte for byte, its answer read once', async () => {
  const seen: string[] = [];
  const icp: Interceptor = {
    name: 't',
    matches: () => true,
    onRequest: async (_ctx, body) => {
      seen.push(body.toString());
      return { action: 'pass' };
    },
    onResponse: async (_ctx, o) => {
      seen.push('status' in o ? `${o.status} ${o.body.toString()}` : o.error.message);
    },
  };
  const c = client((h) => (h.line[1].includes('create') ? { action: 'intercept', interceptor: icp } : { action: 'forward' }));
  const create = 'POST /containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n';
  for (let i = 0; i < create.length; i += 7) {
    c.send(create.slice(i, i + 7));
    await tick();
  }
  c.send(PING);
  await until('two answers', () => answers(c.out()).length === 2);
  assert.equal(received(), create + PING, 'the same bytes, then the next request, on one connection');
  assert.deepEqual(seen, ['{"a":1}', `200 saw POST /containers/create HTTP/1.1 ${create.slice(create.indexOf('\r\n\r\n') + 4)}`]);
  assert.deepEqual(c.records.map((r) => [r.kind, r.interceptor, r.status]), [['intercepted', 't', 200], ['splice', undefined, 200]]);
  c.conn.close();
});

test('intercepted, passed untouched: dockerd\'s answer streams to the client as a forwarded one does, onResponse not called', async () => {
  const seen: string[] = [];
  const icp: Interceptor = {
    name: 't',
    matches: () => true,
    onRequest: async () => ({ action: 'pass', untouched: true }),
    onResponse: async () => void seen.push('onResponse'),
  };
  const c = client((h) => (h.line[1].includes('create') ? { action: 'intercept', interceptor: icp } : { action: 'forward' }));
  const create = 'POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 7\r\n\r\n{"a":1}';
  c.send(create);
  await until('the answer', () => c.out().endsWith('{"a":1}'));
  c.send(PING);
  await until('two answers', () => answers(c.out()).length === 2);
  assert.equal(received(), create + PING);
  const text = `saw POST /containers/create HTTP/1.1 {"a":1}`;
  assert.ok(c.out().startsWith(`HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: ${text.length}\r\n\r\n${text}`), 'dockerd\'s bytes as they came');
  assert.deepEqual(seen, []);
  assert.deepEqual(c.records.map((r) => [r.kind, r.interceptor, r.status]), [['intercepted', 't', 200], ['splice', undefined, 200]]);
  c.conn.close();
});

test('intercepted: a client gone while the interceptor decides sends nothing to dockerd and lets the interceptor undo', async () => {
  const outcomes: string[] = [];
  let release!: () => void;
  const icp: Interceptor = {
    name: 't',
    matches: () => true,
    onRequest: () => new Promise((r) => (release = () => r({ action: 'forward', body: Buffer.from('{}'), state: 'reservation' }))),
    onResponse: async (_ctx, o, state) => {
      outcomes.push(`${'error' in o ? o.error.message : String(o.status)} ${String(state)}`);
    },
  };
  const before = upstreamConns.length;
  const c = client(() => ({ action: 'intercept', interceptor: icp }));
  c.send('POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n{}');
  await until('the interceptor', () => release !== undefined);
  c.conn.close();
  release();
  await until('the undo', () => outcomes.length === 1);
  assert.deepEqual(outcomes, ['client closed the connection reservation'], 'the undo sees the state of what was decided');
  assert.equal(upstreamConns.length, before);
});

test('Upgrade: on a route Docker does not hijack the connection stays framed; the next request is seen as one', async () => {
  const c = client();
  const ping = 'GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n';
  c.send(ping + POST);
  await until('two answers', () => answers(c.out()).length === 2);
  assert.equal(received(), ping + POST);
  assert.deepEqual(c.records.map((r) => [r.kind, r.url]), [['splice', '/_ping'], ['splice', '/v1.41/containers/x/start']]);
  assert.equal(c.conn.state, 'head');
  c.conn.close();
});

test('Upgrade: a 101 nobody asked for ends the connection; nothing after it goes on', async () => {
  const c = client();
  c.send('GET /switch HTTP/1.1\r\nHost: d\r\n\r\n');
  await until('the connection closed', () => c.conn.state === 'closing');
  c.send(PING);
  await tick(20);
  assert.equal(received(), 'GET /switch HTTP/1.1\r\nHost: d\r\n\r\n');
  assert.ok(!c.out().includes('raw-out'), c.out());
});

test('Upgrade: raw only after the 101 to an attach; what came with its head is dropped as dockerd drops it', async () => {
  const c = client();
  const attach = 'POST /v1.41/containers/x/attach?stream=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 2\r\n\r\n{}';
  c.send(attach + 'early');
  await until('raw', () => c.conn.state === 'hijacked');
  c.send('later');
  await until('the later bytes', () => received().endsWith('later'));
  assert.equal(received(), attach + 'later');
  assert.ok(c.out().endsWith('raw-out'), c.out());
  c.conn.close();
});

test('an answer whose head and body dockerd sent together reaches the client in one write (one syscall, not two)', async () => {
  const c = client();
  for (let i = 1; i <= 3; i++) {
    c.send(PING);
    await until('the answer', () => answers(c.out()).length === i);
    await until('its body', () => c.out().endsWith('saw GET /_ping HTTP/1.1 '));
    assert.equal(c.writes(), i);
  }
  c.end();
  await c.finished;
});
