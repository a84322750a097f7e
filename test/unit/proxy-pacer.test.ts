import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { Pacer, MAX_QUEUED } from '../../src/proxy/backpressure';
import { ReadRing, SLOTS } from '../../src/proxy/client-reads';

// Client -> dockerd pacing (uploads) on stand-in sockets whose writes queue
// until the test completes them: the client is read on while dockerd's socket
// drains, up to SLOTS reads in flight, and no read's buffer is written over
// while a write holds it.

/** A dockerd socket whose writes stay queued until `complete()`. */
function queuedSocket() {
  const pending: { b: Buffer; copy: Buffer; cb: () => void }[] = [];
  const s = {
    destroyed: false,
    get writableLength() {
      return pending.reduce((n, p) => n + p.b.length, 0);
    },
    write(b: Buffer, cb: () => void) {
      pending.push({ b, copy: Buffer.from(b), cb });
      return false;
    },
  };
  return {
    sock: s as unknown as net.Socket,
    pending,
    /** The oldest write goes out: its bytes must be what was written (the buffer was not reused meanwhile). */
    complete() {
      const p = pending.shift()!;
      assert.deepEqual(p.b, p.copy, 'a queued write\'s buffer was read into again before it went out');
      p.cb();
    },
  };
}

function pausable() {
  const c = { paused: false, writableLength: 0, pause: () => void (c.paused = true), resume: () => void (c.paused = false) };
  return c;
}

test('uploads: the client is read on while writes to dockerd queue, up to SLOTS reads, into buffers not written over', () => {
  const ring = new ReadRing();
  const client = pausable();
  const up = queuedSocket();
  const pacer = new Pacer(client as unknown as net.Socket, () => true, ring);
  const seen = new Set<ArrayBufferLike>();
  let reads = 0;
  /** One client read as net's onread makes it: into ring.next(), handed over as a view. */
  const read = () => {
    const buf = ring.next();
    seen.add(buf.buffer);
    buf.fill(reads++ % 256, 0, 1000);
    pacer.toDocker(up.sock, buf.subarray(0, 1000));
  };
  read();
  assert.equal(client.paused, false, 'one queued write must not stop the client (stop-and-wait)');
  for (let i = 1; i < SLOTS; i++) {
    assert.equal(client.paused, false, `paused after ${i} reads in flight`);
    read();
  }
  assert.equal(client.paused, true, `${SLOTS} reads in flight: the client waits`);
  up.complete();
  assert.equal(client.paused, false, 'a write done: the client is read on');
  // Steady state: buffers are reused, never more than SLOTS + 1.
  for (let i = 0; i < 200; i++) {
    read();
    if (client.paused) up.complete();
  }
  while (up.pending.length) up.complete();
  assert.ok(seen.size <= SLOTS + 1, `${seen.size} buffers made for ${reads} reads`);
});

test('uploads: a write that goes out at once leaves the one buffer free; copies (no ring) pause at MAX_QUEUED', () => {
  const ring = new ReadRing();
  const client = pausable();
  const done = { writableLength: 0, destroyed: false, write: (_b: Buffer, cb: () => void) => (setImmediate(cb), true) } as unknown as net.Socket;
  const pacer = new Pacer(client as unknown as net.Socket, () => true, ring);
  const first = ring.next();
  for (let i = 0; i < 50; i++) {
    pacer.toDocker(done, ring.next().subarray(0, 10));
    assert.equal(ring.next(), first, 'a write that went out at once freed its buffer for the next read');
  }
  const plain = pausable();
  const up = queuedSocket();
  const copies = new Pacer(plain as unknown as net.Socket, () => true);
  const chunk = Buffer.alloc(64 * 1024);
  let n = 0;
  while (!plain.paused) {
    copies.toDocker(up.sock, Buffer.from(chunk));
    n += chunk.length;
  }
  assert.equal(n, MAX_QUEUED);
  up.complete();
  assert.equal(plain.paused, false);
});
