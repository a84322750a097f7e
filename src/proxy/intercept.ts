import { STATUS_CODES } from 'node:http';
import type { Logger } from 'pino';
import { type Head, header } from './framing';
import { endToEndHeaders, headerObject } from './headers';
import type { InterceptContext, Interceptor, InterceptorResponse, RequestDecision, UpstreamOutcome } from './interceptor';
import { dockerError } from './interceptor';
import type { RequestTarget } from './request-target';

/** What an intercepted call needs of its connection. */
export interface InterceptPort {
  /** Writes the decided request on the connection's dockerd socket; false when there is none (the call failed instead). `untouched`: its answer is not the interceptor's. */
  toDocker(bytes: Buffer, untouched: boolean): boolean;
  /** The whole answer for the client; the call is over. */
  answer(bytes: Buffer, status: number): void;
  /** Whether the client has left. */
  gone(): boolean;
  /** Whether the connection ends with this call's answer (the answer says so). */
  closing(): boolean;
}

/**
 * An intercepted call inside the splice (connection.ts): the framing already
 * delimited its head and body, so here they are only gathered, handed to the
 * interceptor, and its decision turned into the bytes that go to dockerd (or
 * to the client); dockerd's answer, delimited the same way, is gathered and
 * offered to onResponse. No sockets here: bytes in, bytes out.
 */
export class Interception {
  readonly ctx: InterceptContext;
  /** gathering: the request body; deciding: onRequest runs; sent: at dockerd; responding: onResponse runs. */
  phase: 'gathering' | 'deciding' | 'sent' | 'responding' = 'gathering';
  size = 0;
  private parts: Buffer[] = [];
  private state: unknown;
  private answerHead?: Head;

  constructor(
    readonly interceptor: Interceptor,
    private readonly head: Head,
    { path, apiVersion, query }: RequestTarget,
    private readonly headBytes: Buffer,
    private readonly port: InterceptPort,
    log: Logger,
  ) {
    const headers = headerObject(head.rawHeaders);
    this.ctx = { method: head.line[0], path, apiVersion, query, headers, log: log.child({ interceptor: interceptor.name }) };
  }

  /** Request body or, once sent, answer bytes: copied (each socket reads into buffers of its own, read into again). */
  gather(part: Buffer): void {
    this.parts.push(Buffer.from(part));
    if (this.phase === 'gathering') this.size += part.length;
  }

  /**
   * The request body is complete: the interceptor's say, then the bytes for
   * dockerd. The body goes on as the client framed it on `pass`, rewritten
   * with a Content-Length on `forward`.
   */
  async decide(chunked: boolean): Promise<void> {
    this.phase = 'deciding';
    const raw = Buffer.concat(this.parts);
    this.parts = [];
    let d: RequestDecision;
    try {
      d = (await this.interceptor.onRequest?.(this.ctx, chunked ? dechunk(raw) : raw)) ?? { action: 'pass' };
    } catch (e) {
      this.ctx.log.error({ err: e, path: this.ctx.path }, `${this.interceptor.name} failed on the request`);
      d = { action: 'reply', status: 500, message: `calico: ${this.interceptor.name}: ${(e as Error).message}` };
    }
    if (d.action === 'reply') return this.send(answerBytes(dockerError(d.status, d.message), this.port.closing()), d.status);
    if (d.action === 'forward') this.state = d.state;
    if (this.port.gone()) {
      // The client left while the interceptor decided: nothing went to dockerd; let it undo.
      await this.response({ error: new Error('client closed the connection') });
      return;
    }
    let bytes = raw.length ? Buffer.concat([this.headBytes, raw]) : this.headBytes;
    if (d.action === 'forward') {
      // The client's length or chunked framing described its bytes, not these.
      const headers = this.head.rawHeaders.filter((_, i, a) => !/^(content-length|transfer-encoding|expect)$/i.test(a[i - (i % 2)]));
      headers.push('Content-Length', String(d.body.length));
      bytes = Buffer.concat([headBytes(this.head.line.join(' '), headers), d.body]);
    }
    this.phase = 'sent';
    this.port.toDocker(bytes, d.action === 'pass' && d.untouched === true);
  }

  /** dockerd's final head (its body follows through gather()). */
  answered(h: Head, bytes: Buffer): void {
    this.answerHead = h;
    this.parts = [Buffer.from(bytes)];
  }

  /** dockerd's whole answer is in: onResponse, then the client. */
  async complete(): Promise<void> {
    const h = this.answerHead!;
    const [head, ...body] = this.parts;
    const content = Buffer.concat(body);
    const outcome = { status: Number(h.line[1]), headers: headerObject(h.rawHeaders), body: header(h.rawHeaders, 'transfer-encoding') ? dechunk(content) : content };
    const r = await this.response(outcome);
    this.send(r ? answerBytes(r, this.port.closing(), h) : Buffer.concat([head, content]), r?.status ?? outcome.status);
  }

  /** No (whole) answer from dockerd: onResponse sees the error; the client gets `fallback` unless it replaces it. */
  async failed(error: Error, fallback: InterceptorResponse): Promise<void> {
    if (this.phase === 'responding') return;
    const r = (await this.response({ error })) ?? fallback;
    this.send(answerBytes(r, true), r.status);
  }

  private send(bytes: Buffer, status: number): void {
    this.phase = 'responding';
    this.parts = [];
    this.port.answer(bytes, status);
  }

  /** onResponse, if any; undefined passes dockerd's answer on as it came. */
  private async response(outcome: UpstreamOutcome): Promise<InterceptorResponse | undefined> {
    this.phase = 'responding';
    if (!this.interceptor.onResponse) return undefined;
    try {
      return (await this.interceptor.onResponse(this.ctx, outcome, this.state)) ?? undefined;
    } catch (e) {
      this.ctx.log.error({ err: e, path: this.ctx.path }, `${this.interceptor.name} failed on the response; passing Docker's answer through`);
      return undefined;
    }
  }
}

/**
 * A whole answer as bytes. dockerd's own headers (Api-Version, Server...) are
 * kept when `upstream` is its head; the interceptor's override them.
 */
export function answerBytes(r: InterceptorResponse, close: boolean, upstream?: Head): Buffer {
  const override = Object.keys(r.headers ?? {}).map((k) => k.toLowerCase());
  const headers = upstream ? endToEndHeaders(upstream.rawHeaders, ['content-length', ...override]) : [];
  for (const [k, v] of Object.entries(r.headers ?? {})) headers.push(k, v);
  if (r.body.length && !headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'content-type')) headers.push('Content-Type', 'application/json');
  const bodyless = r.status === 204 || r.status === 304;
  if (!bodyless) headers.push('Content-Length', String(r.body.length));
  if (close) headers.push('Connection', 'close');
  const reason = upstream && Number(upstream.line[1]) === r.status ? upstream.line[2] : STATUS_CODES[r.status] ?? '';
  const head = headBytes(`HTTP/1.1 ${r.status} ${reason}`, headers);
  return bodyless ? head : Buffer.concat([head, r.body]);
}

function headBytes(startLine: string, raw: readonly string[]): Buffer {
  let s = startLine + '\r\n';
  for (let i = 0; i + 1 < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return Buffer.from(s + '\r\n', 'latin1');
}

/**
 * The content of a chunked body the framing already delimited (its sizes
 * checked): the chunks' data joined, extensions and trailer dropped.
 */
export function dechunk(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = raw.indexOf(10, at);
    if (eol < 0) break;
    const size = parseInt(raw.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(raw.subarray(eol + 1, eol + 1 + size));
    const next = raw.indexOf(10, eol + 1 + size);
    if (next < 0) break;
    at = next + 1;
  }
  return Buffer.concat(parts);
}
