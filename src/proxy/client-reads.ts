import net from 'node:net';
import { SPLICE_CHUNK } from './upstream';

/** Client reads in flight to dockerd at most (a Node relay's pipe lets 1 MiB queue): SLOTS reads of SPLICE_CHUNK. */
export const SLOTS = 4;

/**
 * The buffers one plain client socket reads into (net's `onread`, with a
 * buffer chosen before each read). While what the client sends goes out to
 * dockerd at once, that is one buffer, read into again and again. When a
 * write to dockerd queues, the read it came in keeps its buffer until that
 * write is done (`hold`, `release`) and the next read lands in another, so
 * the client is read on while dockerd's socket drains: up to SLOTS reads in
 * flight, then the pacer pauses the client (`full`). The buffers are made as
 * first needed and reused for the connection's life: a transfer allocates
 * nothing per read (backpressure.ts says why that matters).
 */
export class ReadRing {
  private readonly free: Buffer[] = [];
  /** Queued writes per held buffer. */
  private readonly held = new Map<ArrayBufferLike, { buf: Buffer; writes: number }>();
  /** The buffer reads go to now (made at the socket's first read: a TLS socket never asks). */
  private current?: Buffer;

  /** The buffer of the next read: the last one unless a write holds it. One is always free (the pacer pauses the client before the last is taken). */
  next(): Buffer {
    if (!this.current || this.held.has(this.current.buffer)) this.current = this.free.pop() ?? Buffer.allocUnsafeSlow(SPLICE_CHUNK);
    return this.current;
  }

  owns(b: Buffer): boolean {
    return b.buffer === this.current?.buffer || this.held.has(b.buffer);
  }

  /** A write to dockerd holds (a part of) `b`, one of this ring's reads. */
  hold(b: Buffer): void {
    const h = this.held.get(b.buffer);
    if (h) h.writes++;
    else this.held.set(b.buffer, { buf: this.current?.buffer === b.buffer ? this.current : b, writes: 1 });
  }

  /** That write is done. */
  release(b: Buffer): void {
    const h = this.held.get(b.buffer);
    if (!h || --h.writes > 0) return;
    this.held.delete(b.buffer);
    if (h.buf !== this.current) this.free.push(h.buf);
  }

  /** Reading on would take the last free buffer: the client must wait for a write to finish. */
  get full(): boolean {
    return this.held.size >= SLOTS;
  }
}

/**
 * A plain (not TLS) accepted client socket, made again around the same
 * handle so that it reads into buffers of its own (net's `onread`, as
 * dockerd's side does: upstream.ts; here from a ReadRing) instead of a new
 * one per read. node's server cannot be asked for that; so the accepted
 * socket stops reading before its first read (that comes on a later tick)
 * and gives its handle to a socket made with `onread`, which counts for the
 * server as the accepted one did (`_server`: server.close() waits for it).
 *
 * Why: every upload (`docker cp` in, build contexts, `docker load`) came as
 * one fresh buffer per read, and in a heap the node's size those
 * started V8 full collections every few dozen MiB (bench/proxy, README). With
 * the ring, an upload allocates nothing in the heap.
 *
 * `read(view)`: the view is valid until it returns unless a write holds its
 * buffer (backpressure.ts); whoever keeps bytes past that copies them.
 * Undefined when the socket is not a plain one (TLS: fresh buffers, as before).
 */
export function readIntoRing(accepted: net.Socket, server: net.Server, ring: ReadRing, read: (view: Buffer) => void): net.Socket | undefined {
  const internal = accepted as unknown as { _handle?: { readStop(): number; reading: boolean } | null; _server?: net.Server };
  const handle = internal._handle;
  if (!handle || accepted.constructor !== net.Socket || typeof handle.readStop !== 'function') return undefined;
  handle.reading = false;
  handle.readStop();
  internal._handle = null;
  const onread = { buffer: () => ring.next(), callback: (n: number, buf: Buffer) => (read(buf.subarray(0, n)), true) };
  const s = new net.Socket({ handle, allowHalfOpen: true, readable: true, writable: true, onread } as unknown as net.SocketConstructorOpts);
  (s as unknown as { _server: net.Server })._server = server;
  return s;
}
