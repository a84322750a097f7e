import type net from 'node:net';
import { type ReadRing, SLOTS } from './client-reads';
import { SPLICE_CHUNK } from './upstream';

/** Bytes queued to dockerd above which the client is paused (when its reads are not in a ReadRing, which bounds them itself). */
export const MAX_QUEUED = SLOTS * SPLICE_CHUNK;

/**
 * The pace of one spliced connection: each side is read only as fast as the
 * other takes it. Both sockets read into buffers of their own (dockerd's: one,
 * upstream.ts; a plain client's: a ReadRing, client-reads.ts), so a read is a
 * view valid until the next one. dockerd to client: a read written that did
 * not go out at once pauses dockerd's socket until it did. Client to dockerd
 * (uploads): a write that queues keeps its read's buffer and the client is
 * read on into another, up to SLOTS reads in flight (as a relay's pipe lets
 * about 1 MiB queue), so the client is not left waiting for each read to
 * reach dockerd's socket. No read allocates, so a transfer either way
 * (`docker cp`, build contexts, `docker load`, logs, hijacked streams)
 * starts no V8 collection in the node's heap (per-read buffers once started
 * a full mark-compact every few dozen MiB; README, bench/proxy).
 */
export class Pacer {
  /** The dockerd socket paused until the client took everything written to it. */
  private held?: net.Socket;
  private drainWait = false;
  /** The dockerd socket whose pending writes keep the client paused. */
  private clientHeldBy?: net.Socket;

  /**
   * `mayReadClient`: whether the connection's state reads the client on
   * (body, hijacked). `ring`: the client's read buffers (none: its reads are
   * fresh buffers, TLS, or copies).
   */
  constructor(private readonly client: net.Socket, private readonly mayReadClient: () => boolean, private readonly ring?: ReadRing) {}

  /** A read from dockerd (`view` in its socket's buffer), handed to `take` as a buffer safe for as long as `take` needs it. */
  fromDocker(s: net.Socket, view: Buffer, take: (b: Buffer) => void): void {
    const c = this.client;
    if (c.writableLength > 0) {
      take(Buffer.from(view));
      return;
    }
    take(view);
    // Not all taken at once: the client's queue holds (a part of) the view.
    // (One dockerd socket reads at a time; a held one before it is gone.)
    if (c.writableLength > 0 && !s.destroyed && this.held !== s) {
      this.held = s;
      s.pause();
    }
  }

  toClient(s: net.Socket, b: Buffer): void {
    if (!b.length) return;
    const c = this.client;
    if (!c.write(b, () => this.clientTook()) && !this.drainWait) {
      // A slow client pauses dockerd's socket.
      this.drainWait = true;
      s.pause();
      c.once('drain', () => {
        this.drainWait = false;
        if (this.held !== s) s.resume();
      });
    }
  }

  /** Client bytes to dockerd (`b`: a view of a client read, or a copy). */
  toDocker(sock: net.Socket, b: Buffer): void {
    if (!b.length) return;
    let ring: ReadRing | undefined;
    sock.write(b, () => {
      ring?.release(b);
      if (this.clientHeldBy !== sock || this.tooMuch(sock)) return;
      this.clientHeldBy = undefined;
      if (this.mayReadClient()) this.client.resume();
    });
    // Written at once: the read's buffer is free again.
    if (sock.writableLength === 0) return;
    if (this.ring?.owns(b)) (ring = this.ring).hold(b);
    if (!this.clientHeldBy && this.tooMuch(sock)) {
      this.clientHeldBy = sock;
      this.client.pause();
    }
  }

  /** Enough of the client's bytes wait for dockerd's socket: reading on would take the last free buffer, or queue more than MAX_QUEUED. */
  private tooMuch(sock: net.Socket): boolean {
    return this.ring?.full === true || sock.writableLength >= MAX_QUEUED;
  }

  /** Whether the client is paused for dockerd's sake (the connection must not resume it). */
  get clientHeld(): boolean {
    return this.clientHeldBy !== undefined;
  }

  private clientTook(): void {
    const s = this.held;
    if (s && this.client.writableLength === 0) {
      this.held = undefined;
      if (!this.drainWait) s.resume();
    }
  }
}

/** How long a client may go on sending a body that was answered early before its socket goes. */
const LINGER_MS = 10000;

/**
 * Ends a connection after its last answer (`last`, if not written yet). Our
 * side is half-open by design (hijacks), so once the answer is flushed the
 * socket goes, as node's http server does, instead of waiting for a client
 * that may never close its side.
 *
 * `drain`: the answer came before the client finished sending its body (a
 * 413, an early refusal): the rest of the body is read and dropped so the
 * client can finish writing and read the answer, then the socket goes (at
 * the client's end, or after LINGER_MS).
 */
export function endClient(c: net.Socket, last?: Buffer, drain = false): void {
  if (!drain) {
    c.end(last ?? '', () => c.destroy());
    return;
  }
  c.end(last ?? '');
  const timer = setTimeout(() => c.destroy(), LINGER_MS);
  timer.unref();
  c.once('end', () => c.destroy());
  c.once('close', () => clearTimeout(timer));
  c.resume();
}
