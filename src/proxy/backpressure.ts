import type net from 'node:net';

/**
 * The pace of one spliced connection: each side is read only as fast as the
 * other takes it. Both sockets read into one buffer of their own (dockerd's:
 * upstream.ts; a plain client's: client-reads.ts), so a read is a view valid
 * until the next one: a read written to the other side that did not go out
 * at once pauses its source until it did. No read allocates, so a transfer
 * either way (`docker cp`, build contexts, `docker load`, logs, hijacked
 * streams) starts no V8 collection in the node's heap (per-read buffers once
 * started a full mark-compact every few dozen MiB; README, bench/proxy).
 */
export class Pacer {
  /** The dockerd socket paused until the client took everything written to it. */
  private held?: net.Socket;
  private drainWait = false;
  /** The dockerd socket whose pending write keeps the client paused. */
  private clientHeldBy?: net.Socket;

  /** `mayReadClient`: whether the connection's state reads the client on (body, hijacked). */
  constructor(private readonly client: net.Socket, private readonly mayReadClient: () => boolean) {}

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

  toDocker(sock: net.Socket, b: Buffer): void {
    if (!b.length) return;
    sock.write(b, () => {
      if (this.clientHeldBy !== sock || sock.writableLength > 0) return;
      this.clientHeldBy = undefined;
      if (this.mayReadClient()) this.client.resume();
    });
    if (sock.writableLength > 0 && !this.clientHeldBy) {
      this.clientHeldBy = sock;
      this.client.pause();
    }
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
