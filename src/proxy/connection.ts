import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { BodyScanner, MAX_HEAD, headEnd, header } from './framing';
import type { Interceptor } from './interceptor';
import { MAX_INTERCEPTED_BODY, dockerError } from './interceptor';
import { Pacer, endClient } from './backpressure';
import type { ReadRing } from './client-reads';
import { type Call, type ConnectionHooks, type RequestReading, newCall, readAnswer, record, uncount } from './call';
import { DockerSide } from './docker-side';
import { SPLICE_CHUNK } from './upstream';
import { BODY_WAIT_MS, Hijack } from './hijack';
import { Interception, type InterceptPort, answerBytes } from './intercept';

const EMPTY = Buffer.alloc(0);
const BAD_CHUNKS = 'calico proxy: malformed chunked request body (chunk extensions, trailers and bare LF are refused)';

/**
 * head: reading a request head. body: a request body on its way (to dockerd,
 * gathered for an interceptor, or an Upgrade's first write gathered).
 * answer: the request is complete and its answer (or the interceptor) is
 * awaited; what the client sends meanwhile is kept, up to one read's worth,
 * not sent (Docker clients never pipeline); its EOF is a client leaving.
 * hijacked: raw both ways. closing: the last answer is out, or torn down.
 */
export type State = 'head' | 'body' | 'answer' | 'hijacked' | 'closing';

/**
 * One client connection, spliced to its own connection to dockerd. Request
 * heads are parsed once, by the framing, and offered to `onHead`; forwarded
 * requests and their answers move as the bytes they are; an intercepted
 * request's head and body go to its interceptor, what it decides goes to
 * dockerd on the same connection, and the answer, read once, to onResponse.
 */
export class Connection {
  state: State = 'head';
  private readonly c: net.Socket;
  private readonly pacer: Pacer;
  private readonly docker: DockerSide;
  private inbuf: Buffer = EMPTY;
  private call?: Call;
  private hijack?: Hijack;
  private clientEnded = false;
  private closed = false;

  /** `ring`: the buffers a plain client socket reads into (client-reads.ts). */
  constructor(client: net.Socket | Duplex, private readonly hooks: ConnectionHooks, ring?: ReadRing) {
    const c = (this.c = client as net.Socket);
    c.allowHalfOpen = true;
    c.setNoDelay?.(true);
    c.setTimeout?.(0);
    this.pacer = new Pacer(c, () => this.state !== 'closing' && !this.full(), ring);
    this.docker = new DockerSide(hooks.docker, hooks.dockerLabel, {
      read: (s, view) => this.pacer.fromDocker(s, view, (b) => (this.hijack ? this.hijack.fromDocker(b) : this.call?.answer?.feed(b))),
      ended: () => this.onDockerEnd(),
      failed: (err, status, message) => (status || this.call?.icp ? this.fail(status || 502, message, err) : this.close()),
      busy: () => this.call !== undefined,
    });
    c.on('data', (b: Buffer) => this.read(b));
    c.on('end', () => this.onClientEnd());
    c.on('error', (err) => {
      hooks.log.debug({ err: err.message }, 'spliced connection: client side failed');
      this.close();
    });
    c.on('close', () => this.close());
  }

  /** A client read: maybe a view in a buffer read into again (client-reads.ts), so what stays in `inbuf` is copied. */
  read(b: Buffer): void {
    if (this.state === 'closing') return;
    if (this.state === 'hijacked') return this.hijack!.fromClient(b);
    this.inbuf = this.inbuf.length ? Buffer.concat([this.inbuf, b]) : b;
    if (this.state !== 'answer') this.step();
    else if (this.full()) this.c.pause();
    if (this.inbuf.length && this.inbuf.buffer === b.buffer) this.inbuf = Buffer.from(this.inbuf);
  }

  private onClientEnd(): void {
    this.clientEnded = true;
    if (this.state === 'closing') return;
    if (this.state === 'hijacked') return this.hijack!.clientEnded();
    if (this.call?.upgrade && (this.call.gathering || this.state === 'answer')) {
      // The EOF goes on once the stream is raw (goRaw), or ends the connection after another answer (finish).
      this.sendUpgrade();
    } else if (this.state === 'head' && !this.call) {
      this.state = 'closing';
      endClient(this.c);
      this.docker.end();
    } else {
      // A client that half-closes an ordinary call has left: let go of dockerd's side (`docker events` ^C).
      this.close();
    }
  }

  /** Request heads, as long as whole ones are there; then the body. */
  private step(): void {
    while (this.state === 'head' && this.inbuf.length) {
      const end = headEnd(this.inbuf);
      if (end < 0) {
        if (this.inbuf.length > MAX_HEAD) this.refuse(431, 'calico proxy: request head too large');
        return;
      }
      const d = this.hooks.onHead(this.inbuf, end);
      if (d.action === 'refuse') return this.refuse(d.status, d.message);
      this.begin(d.request, d.action === 'intercept' ? d.interceptor : undefined);
    }
    if (this.state === 'body') this.feedBody();
  }

  private begin(r: RequestReading, icp?: Interceptor): void {
    const { head: h, framing } = r;
    const call = newCall(r, icp?.name);
    this.call = call;
    this.hooks.inflight(1);
    this.state = 'body';
    if (call.upgrade) {
      if (!this.docker.socket()) return;
      this.listen(call);
      call.timer = setTimeout(() => this.sendUpgrade(), BODY_WAIT_MS);
      return; // feedBody sends it once the first write is all there
    }
    if (icp) {
      call.body = new BodyScanner(framing, true);
      call.icp = new Interception(icp, h, r.target, Buffer.from(this.inbuf.subarray(0, h.size)), this.port(call), this.hooks.log);
      this.inbuf = this.inbuf.subarray(h.size);
      if (framing.kind !== 'none' && /100-continue/i.test(header(h.rawHeaders, 'expect') ?? '')) this.c.write('HTTP/1.1 100 Continue\r\n\r\n');
      return;
    }
    const sock = this.docker.socket();
    if (!sock) return;
    this.listen(call);
    this.forward(call, sock);
  }

  /** The head and the body bytes already read, in one write; the rest of the body as it comes (feedBody). */
  private forward(call: Call, sock: net.Socket): void {
    call.body = new BodyScanner(call.framing, true);
    const size = call.headSize;
    const n = call.body.feed(this.inbuf.subarray(size));
    this.pacer.toDocker(sock, this.inbuf.subarray(0, size + n));
    this.inbuf = this.inbuf.subarray(size + n);
    if (call.body.broken) return this.refuseBody(call);
    if (call.body.done) this.state = 'answer';
  }

  /** A chunked body Go could read another way: what came before the bad byte went on; nothing after it does. */
  private refuseBody(call: Call): void {
    return call.status === 0 && !call.answer?.started ? this.refuse(400, BAD_CHUNKS) : this.close();
  }

  private feedBody(): void {
    const call = this.call!;
    if (call.gathering) {
      if (this.inbuf.length >= call.want || this.clientEnded) this.sendUpgrade();
      return;
    }
    if (!this.inbuf.length && !call.icp) return;
    const n = call.body!.feed(this.inbuf);
    const part = n === this.inbuf.length ? this.inbuf : this.inbuf.subarray(0, n);
    this.inbuf = this.inbuf.subarray(n);
    if (!call.icp) {
      if (n) this.pacer.toDocker(this.docker.current!, part);
      if (call.body!.broken) this.refuseBody(call);
      else if (call.body!.done) this.state = 'answer';
      return;
    }
    if (n) call.icp.gather(part);
    if (call.icp.size > MAX_INTERCEPTED_BODY) {
      this.refuse(413, `calico proxy: reading ${call.method} ${call.icp.ctx.path} body: request body is larger than ${MAX_INTERCEPTED_BODY} bytes`);
    } else if (call.body!.broken) this.refuse(400, BAD_CHUNKS);
    else if (call.body!.done) {
      this.state = 'answer';
      void call.icp.decide(call.framing.kind === 'chunked');
    }
  }

  private full = (): boolean => this.state === 'answer' && this.inbuf.length >= SPLICE_CHUNK;

  /** An Upgrade's head and declared body in one write (hijack.ts says why); framed until dockerd's 101 (readAnswer). */
  private sendUpgrade(): void {
    const call = this.call;
    const sock = this.docker.current;
    if (!call?.gathering || this.state !== 'body' || !sock) return;
    clearTimeout(call.timer);
    call.gathering = false;
    this.forward(call, sock);
    call.discard = this.inbuf.length;
  }

  /** dockerd's answer to `call` (call.ts, readAnswer). */
  private listen(call: Call): void {
    readAnswer(call, {
      toClient: (b) => this.docker.current && this.pacer.toClient(this.docker.current, b),
      raw: (rest) => this.goRaw(rest),
      close: () => this.close(),
      finish: () => this.finish(),
    });
  }

  /** How an intercepted call reaches dockerd and the client. */
  private port(call: Call): InterceptPort {
    return {
      toDocker: (bytes, untouched) => {
        const sock = this.docker.socket();
        if (!sock) return false;
        if (untouched) call.icp = undefined; // the answer streams as a forwarded call's
        this.listen(call);
        sock.write(bytes);
        return true;
      },
      answer: (bytes, status) => {
        call.status = status;
        if (!this.closed) {
          this.c.write(bytes);
          return this.finish();
        }
        record(call, this.hooks);
        this.docker.destroy();
      },
      gone: () => this.closed,
      closing: () => call.close,
    };
  }

  /** The call's answer is out: the next request, or the end of the connection. */
  private finish(): void {
    const call = this.call!;
    record(call, this.hooks);
    // Answered before the request body was all sent (dockerd refused it
    // early): the rest of the body cannot be framed as a next request.
    const bodyLeft = call.body !== undefined && !call.body.done;
    this.call = undefined;
    this.state = 'head';
    if (call.close || bodyLeft || (this.clientEnded && !this.inbuf.length)) {
      this.state = 'closing';
      endClient(this.c, undefined, bodyLeft);
      return this.docker.end();
    }
    if (!this.pacer.clientHeld) this.c.resume();
    this.step();
  }

  private goRaw(rest: Buffer): void {
    const call = this.call!;
    this.state = 'hijacked';
    call.kind = 'hijack';
    uncount(call, this.hooks);
    this.hijack = new Hijack(this.c, this.docker.current!, this.pacer, this.hooks.hijacked);
    const early = call.upgrade ? this.inbuf.subarray(Math.min(call.discard, this.inbuf.length)) : this.inbuf;
    this.inbuf = EMPTY;
    this.hijack.start(rest, early, this.clientEnded);
  }

  private onDockerEnd(): void {
    const call = this.call!;
    if (this.state === 'hijacked') return this.hijack!.dockerEnded();
    if (call.answer?.untilClose && !call.answer.complete) {
      call.close = true;
      return call.icp ? void call.icp.complete() : this.finish();
    }
    if (call.answer?.complete) return;
    if (call.icp) return this.fail(502, `calico proxy: Docker at ${this.hooks.dockerLabel} closed the connection without a whole answer`, new Error('no answer'));
    this.close();
  }

  /** The call could not reach (or was refused by) dockerd: an interceptor still sees it, the client gets `status`. */
  private fail(status: number, message: string, error: Error): void {
    const call = this.call;
    if (!call?.icp) return this.refuse(status, message);
    call.close = true;
    void call.icp.failed(error, dockerError(status, message));
  }

  /** Our own answer in Docker's error shape; the connection ends with it (a client still sending is read off first). */
  private refuse(status: number, message: string): void {
    const call = this.call;
    if (call) {
      call.status = status;
      record(call, this.hooks);
    }
    this.call = undefined;
    this.state = 'closing';
    // A client still sending (a refused head's body) reads the answer before the socket goes: a close with unread bytes is a reset that can lose it.
    endClient(this.c, answerBytes(dockerError(status, message), true), !this.clientEnded);
    this.docker.destroy();
  }

  /** Tears everything down (either side failed or went). An intercepted call already at dockerd finishes, for its onResponse. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.state = 'closing';
    const call = this.call;
    clearTimeout(call?.timer);
    this.hijack?.close();
    this.c.destroy();
    if (call?.icp?.phase === 'sent' && this.docker.current) return;
    if (call?.icp?.phase !== 'responding' && call) record(call, this.hooks);
    this.docker.destroy();
  }
}
