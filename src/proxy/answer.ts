import { type AnswerHead, BodyScanner, MAX_HEAD, headEnd, scanAnswerHead } from './framing';

const EMPTY = Buffer.alloc(0);

/** Where dockerd's answer goes as the reader delimits it. */
export interface AnswerSink {
  /** 100 Continue and friends: the final answer follows. */
  interim(head: Buffer): void;
  /**
   * The final head. 'raw': the connection goes raw from here (`rest` is then
   * the sink's). 'stream': the head's bytes are handed to `body` together
   * with the body bytes that came in the same read (one write to the client,
   * not two: a second write per answer was a third syscall per request).
   * 'taken': the sink took the head's bytes itself.
   */
  head(h: AnswerHead, bytes: Buffer, rest: Buffer): 'raw' | 'stream' | 'taken';
  body(part: Buffer): void;
  done(): void;
  /** Not an HTTP answer, or a head beyond MAX_HEAD. */
  broken(): void;
}

/**
 * dockerd's answer to one request, delimited by the framing as it arrives:
 * its head parsed once, its body counted, never decoded. The bytes handed on
 * are views of what was fed (the caller knows how long those live); only a
 * partial head is copied, to outlive the read it came in.
 */
export class AnswerReader {
  head?: AnswerHead;
  private body?: BodyScanner;
  private buf: Buffer = EMPTY;
  private stopped = false;

  constructor(private readonly method: string, private readonly sink: AnswerSink) {}

  get complete(): boolean {
    return this.body?.done === true;
  }

  /** Some byte of the answer came. */
  get started(): boolean {
    return this.head !== undefined || this.buf.length > 0;
  }

  /** A close-delimited answer: complete when dockerd closes. */
  get untilClose(): boolean {
    return this.head?.framing.kind === 'close';
  }

  feed(b: Buffer): void {
    if (this.stopped || this.complete) return; // beyond the answer: nothing a client could use
    if (this.body) return this.feedBody(b);
    this.buf = this.buf.length ? Buffer.concat([this.buf, b]) : b;
    const end = headEnd(this.buf);
    if (end < 0) {
      if (this.buf.length > MAX_HEAD) this.sink.broken();
      else if (this.buf === b) this.buf = Buffer.from(b); // kept past this read
      return;
    }
    const buf = this.buf;
    const h = scanAnswerHead(buf, end, this.method);
    if (!h) return this.sink.broken();
    const bytes = buf.subarray(0, end);
    const rest = buf.subarray(end);
    this.buf = EMPTY;
    if (h.status >= 100 && h.status < 200 && h.status !== 101) {
      this.sink.interim(bytes);
      if (rest.length) this.feed(rest);
      return;
    }
    this.head = h;
    const how = this.sink.head(h, bytes, rest);
    if (how === 'raw') {
      this.stopped = true;
      return;
    }
    this.body = new BodyScanner(h.framing);
    // `bytes` and `rest` lie side by side in `buf`: head and body bytes as one view.
    if (how === 'stream') this.feedBody(rest, buf, end);
    else if (rest.length) this.feedBody(rest);
    else if (this.body.done) this.sink.done();
  }

  /** `before`: the `skip` bytes in front of `b` (a head) go out with its body part. */
  private feedBody(b: Buffer, before?: Buffer, skip = 0): void {
    const n = this.body!.feed(b);
    if (before) this.sink.body(before.subarray(0, skip + n));
    else this.sink.body(n === b.length ? b : b.subarray(0, n));
    if (this.body!.broken) this.sink.broken();
    else if (this.body!.done) this.sink.done();
  }
}
