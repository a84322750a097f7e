import type net from 'node:net';
import { SPLICE_CHUNK, type SpliceRead } from './upstream';

/** What the connection hears from its dockerd socket (only the current one: a replaced socket is ignored). */
export interface DockerEvents {
  /** `view`: bytes in the socket's one read buffer, valid until this returns. */
  read(s: net.Socket, view: Buffer): void;
  /** dockerd ended or closed its side while a call was on it. */
  ended(): void;
  /**
   * The socket failed while a call was on it: what the client should be
   * answered (status 0: it failed mid-answer, nothing can be answered).
   */
  failed(err: Error, status: number, message: string): void;
  /** Whether a call is on the connection now. */
  busy(): boolean;
}

/**
 * A client connection's one connection to dockerd: opened at its first
 * forwarded request, kept for its life, opened again when dockerd let it go
 * between calls. Reads land in one buffer per connection (backpressure.ts).
 */
export class DockerSide {
  private s?: net.Socket;

  constructor(
    private readonly open: (onread: SpliceRead) => net.Socket,
    private readonly label: string,
    private readonly ev: DockerEvents,
  ) {}

  /** The socket, opened (again) when there is none; undefined when that failed (`failed` said so). */
  socket(): net.Socket | undefined {
    const have = this.s;
    if (have && !have.destroyed && !have.readableEnded) return have;
    // An upstream that ended its side between calls is half-open on ours: let it go.
    have?.destroy();
    const buffer = Buffer.allocUnsafe(SPLICE_CHUNK);
    let s: net.Socket;
    try {
      s = this.open({
        buffer,
        callback: (n: number) => {
          if (s === this.s) this.ev.read(s, buffer.subarray(0, n));
          return true; // pausing is the pacer's (s.pause())
        },
      });
    } catch (e) {
      this.ev.failed(e as Error, 502, `calico proxy: cannot reach Docker at ${this.label}: ${(e as Error).message}`);
      return undefined;
    }
    this.s = s;
    let connected = false;
    s.once('connect', () => (connected = true));
    s.on('end', () => (s === this.s && this.ev.busy() ? this.ev.ended() : s.destroy()));
    s.on('error', (err) => {
      if (s !== this.s || !this.ev.busy()) return;
      this.s = undefined;
      if (s.bytesRead > 0) this.ev.failed(err, 0, `calico proxy: Docker at ${this.label} failed while answering: ${err.message}`);
      // dockerd took the connection and closed it while the request was on
      // its way (EPIPE, ECONNRESET): it refused what it read.
      else if (connected) this.ev.failed(err, 400, `calico proxy: Docker closed the connection before answering this request (${err.message}): it refused the request as sent`);
      else this.ev.failed(err, 502, `calico proxy: cannot reach Docker at ${this.label}: ${err.message}`);
    });
    s.on('close', () => {
      if (s !== this.s) return;
      this.s = undefined;
      if (this.ev.busy()) this.ev.ended();
    });
    return s;
  }

  /** The open socket, if any (a raw stream's, an answer's). */
  get current(): net.Socket | undefined {
    return this.s;
  }

  end(): void {
    this.s?.end();
  }

  destroy(): void {
    this.s?.destroy();
    this.s = undefined;
  }
}
