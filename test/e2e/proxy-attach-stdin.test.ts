import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import Dockerode from 'dockerode';
import { teardownAll, sleep } from '../harness';
import { startProxyFixture, ProxyFixture } from './proxy-fixture';

// Issue 10, deliver 1: a hijacked call reaches dockerd as the client framed
// it. dockerd discards the bytes it read together with an attach request's
// head and gives the container, as stdin, whatever arrives in a later read;
// dockerode's attach sends a small JSON body with its request, so a proxy that
// splits head and body corrupts the container's input.

after(teardownAll);
let f: ProxyFixture;
let direct: Dockerode;
let proxied: Dockerode;
before(async () => {
  f = await startProxyFixture();
  direct = new Dockerode({ socketPath: f.d.socket });
  const port = (f.proxy.address as { port: number }).port;
  proxied = new Dockerode({ host: '127.0.0.1', port, protocol: 'http' });
});

// The shell waits until the client has seen "ready" (so the terminal echo is
// off and no output races the command), then runs exactly one line of stdin.
const SCRIPT = 'stty -echo 2>/dev/null; echo ready; read -r l; eval "$l"';
const LINE = "printf 'out-%s\\n' 42; echo err-1 >&2\n";

/** Splits Docker's multiplexed (Tty off) stream into stdout and stderr. */
function demux(b: Buffer): { stdout: string; stderr: string } {
  const out = { stdout: '', stderr: '' };
  for (let i = 0; i + 8 <= b.length; ) {
    const len = b.readUInt32BE(i + 4);
    const part = b.subarray(i + 8, i + 8 + len).toString();
    if (b[i] === 2) out.stderr += part;
    else out.stdout += part;
    i += 8 + len;
  }
  return out;
}

/** dockerode's attach-with-stdin flow, as the issue describes it: create, attach (hijack), start, write, wait. */
async function attachFlow(docker: Dockerode, tty: boolean): Promise<{ output: string; code: number }> {
  const c = await docker.createContainer({
    Image: f.image,
    Cmd: ['sh', '-c', SCRIPT],
    Tty: tty,
    OpenStdin: true,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
  });
  try {
    const stream = (await c.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as unknown as Duplex;
    const got: Buffer[] = [];
    const closed = new Promise<void>((r) => {
      stream.on('end', r);
      stream.on('close', r);
    });
    let wrote = false;
    stream.on('data', (chunk: Buffer) => {
      got.push(chunk);
      if (!wrote && Buffer.concat(got).includes('ready')) {
        wrote = true;
        stream.write(LINE);
      }
    });
    await c.start();
    const { StatusCode } = (await c.wait()) as { StatusCode: number };
    await Promise.race([closed, sleep(5000)]);
    stream.destroy();
    const raw = Buffer.concat(got);
    if (tty) return { output: raw.toString(), code: StatusCode };
    const d = demux(raw);
    return { output: `${d.stdout}|${d.stderr}`, code: StatusCode };
  } finally {
    await c.remove({ force: true }).catch(() => undefined);
  }
}

const EXPECTED = { tty: 'ready\r\nout-42\r\nerr-1\r\n', plain: 'ready\nout-42\n|err-1\n' };

/** Runs `n` flows, `width` at a time; returns the ones that did not see the exact expected output. */
async function runMany(docker: Dockerode, tty: boolean, n: number, width = 3): Promise<string[]> {
  const want = tty ? EXPECTED.tty : EXPECTED.plain;
  const bad: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        const r = await attachFlow(docker, tty);
        if (r.output !== want || r.code !== 0) bad.push(`run ${i}: exit ${r.code}, output ${JSON.stringify(r.output)}`);
      }
    }),
  );
  return bad;
}

for (const tty of [false, true]) {
  test(`dockerode attach({hijack, stdin}) with Tty ${tty ? 'on' : 'off'}: directly 5/5 (control), through the proxy 50/50 exact`, async () => {
    const ctl = await runMany(direct, tty, 5);
    assert.deepEqual(ctl, [], 'the flow itself fails directly against dockerd');
    const bad = await runMany(proxied, tty, 50);
    assert.deepEqual(bad, [], `${bad.length}/50 runs through the proxy saw other output`);
  });
}

/**
 * One attach on a raw socket: the request (head + `{"stream":true}` body,
 * segmented as `segments` says, 50 ms apart), then, once the container runs,
 * `line1\n` as stdin. Returns the line the container's shell read.
 */
async function rawAttach(via: 'direct' | 'proxy', segments: (head: string, body: string) => string[]): Promise<string> {
  const cr = await f.d.docker(['create', '-i', f.image, 'sh', '-c', 'read -r l; echo "got:[$l]"']);
  assert.equal(cr.code, 0, cr.stderr);
  const id = cr.stdout.trim();
  try {
    const body = '{"stream":true,"stdin":true}';
    const head =
      `POST /containers/${id}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`;
    const port = (f.proxy.address as { port: number }).port;
    const s = via === 'direct' ? net.connect({ path: f.d.socket, allowHalfOpen: true }) : net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    s.setNoDelay(true);
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    const closed = new Promise<void>((r) => s.on('close', () => r()));
    await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
    for (const [i, seg] of segments(head, body).entries()) {
      if (i) await sleep(50);
      s.write(seg);
    }
    for (let t = 0; !Buffer.concat(got).toString('latin1').includes('\r\n\r\n'); t++) {
      assert.ok(t < 200, `${via}: no answer to the attach request`);
      await sleep(25);
    }
    assert.match(Buffer.concat(got).toString('latin1'), /^HTTP\/1\.1 101 /);
    const st = await f.d.docker(['start', id]);
    assert.equal(st.code, 0, st.stderr);
    s.write('line1\n');
    const said = () => {
      const all = Buffer.concat(got);
      return demux(all.subarray(all.indexOf('\r\n\r\n') + 4)).stdout;
    };
    // dockerd keeps an attach with stdin open after the container exited: stop at the answer.
    for (let t = 0; t < 400 && !/^got:\[.*\]$/m.test(said()); t++) await Promise.race([closed, sleep(25)]);
    s.destroy();
    const out = said();
    const m = /^got:\[(.*)\]$/m.exec(out);
    assert.ok(m, `${via}: container said ${JSON.stringify(out)}`);
    return m[1];
  } finally {
    await f.d.docker(['rm', '-f', id]);
  }
}

test('raw socket: what the container reads on stdin, head and body in one segment or two, directly and through the proxy', async () => {
  const oneSegment = (h: string, b: string) => [h + b];
  const withEarlyStdin = (h: string, b: string) => [h + b + 'early\n'];
  const split = (h: string, b: string) => [h, b];
  // In one segment dockerd reads the body (and anything else that came with
  // the head) together with the head and discards it: the same through the proxy.
  for (const [what, seg] of [['one segment', oneSegment], ['one segment with early stdin', withEarlyStdin]] as const) {
    const d = await rawAttach('direct', seg);
    const p = await rawAttach('proxy', seg);
    assert.equal(d, 'line1', `direct, ${what}`);
    assert.equal(p, d, `${what}: through the proxy differs from direct`);
  }
  // Split, dockerd gives the late body to the container: this is why the
  // proxy must never write head and body apart. Through the proxy the body is
  // gathered and sent with the head, so it never leaks.
  assert.equal(await rawAttach('direct', split), '{"stream":true,"stdin":true}line1', 'dockerd no longer leaks a late attach body into stdin');
  assert.equal(await rawAttach('proxy', split), 'line1', 'through the proxy the split body leaked into stdin');
});
