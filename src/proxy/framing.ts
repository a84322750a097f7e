/**
 * HTTP/1.1 message framing, just enough for the splice (connection.ts) to find
 * where each request and response ends: heads are parsed for the start line
 * and headers, bodies are only counted (Content-Length) or scanned for chunk
 * boundaries (chunked), never decoded. Pure.
 */

/** Heads larger than this are refused (the listener's old maxHeaderSize). */
export const MAX_HEAD = 1024 * 1024;

export interface Head {
  /** Request: method, target, version. Response: version, status, reason. */
  line: [string, string, string];
  rawHeaders: string[];
  /** Bytes of the head including its blank line. */
  size: number;
}

/** Index just past the blank line ending a head (CRLF or bare LF lines), or -1. */
export function headEnd(buf: Buffer): number {
  for (let i = buf.indexOf(10); i >= 0 && i < buf.length; i = buf.indexOf(10, i + 1)) {
    if (buf[i + 1] === 10) return i + 2;
    if (buf[i + 1] === 13 && buf[i + 2] === 10) return i + 3;
    if (i + 1 >= buf.length || (buf[i + 1] === 13 && i + 2 >= buf.length)) return -1;
  }
  return -1;
}

/** Parses a complete answer head (`buf` holds at least `size` bytes). Undefined when it is not HTTP/1.x. (Request heads: request-head.ts.) */
export function parseAnswerHead(buf: Buffer, size: number): Head | undefined {
  const text = buf.toString('latin1', 0, size);
  let eol = text.indexOf('\n');
  const m = STATUS_LINE.exec(text.slice(0, lineEnd(buf, 0, eol)));
  if (!m) return undefined;
  const rawHeaders: string[] = [];
  for (let at = eol + 1; at < text.length; at = eol + 1) {
    eol = text.indexOf('\n', at);
    if (eol < 0) eol = text.length;
    const end = lineEnd(buf, at, eol); // latin1: character i of text is byte i of buf
    if (end === at) continue; // the blank line
    const c = text.indexOf(':', at);
    if (c <= at || c >= end) return undefined;
    rawHeaders.push(text.slice(at, c).trim(), text.slice(c + 1, end).trim());
  }
  return { line: [m[1], m[2], m[3] ?? ''], rawHeaders, size };
}

/** What the splice needs of an answer head: its status, body framing, and whether it ends the connection. */
export interface AnswerHead {
  status: number;
  framing: Framing;
  close: boolean;
}

/**
 * An answer head read as parseAnswerHead reads it (undefined where it would
 * be), for the three headers that frame it only: every forwarded answer goes
 * through here, and building its other headers as strings was most of the
 * proxy's own CPU per request. Interceptors get parseAnswerHead's Head.
 */
export function scanAnswerHead(buf: Buffer, size: number, method: string): AnswerHead | undefined {
  let eol = buf.indexOf(10);
  const m = STATUS_LINE.exec(buf.toString('latin1', 0, lineEnd(buf, 0, eol)));
  if (!m) return undefined;
  let te: string | undefined;
  let cl: string | undefined;
  let conn: string | undefined;
  for (let at = eol + 1; at < size; at = eol + 1) {
    eol = buf.indexOf(10, at);
    if (eol < 0 || eol > size) eol = size;
    const end = lineEnd(buf, at, eol);
    if (end === at) continue; // the blank line
    const c = buf.indexOf(58, at);
    if (c <= at || c >= end) return undefined;
    const f = buf[at] | 0x20; // c, t, or what trim() drops
    if (f !== 0x63 && f !== 0x74 && buf[at] > 32 && buf[at] !== 0xa0) continue;
    const name = buf.toString('latin1', at, c).trim().toLowerCase();
    if (name === 'transfer-encoding') te ??= buf.toString('latin1', c + 1, end).trim();
    else if (name === 'content-length') cl ??= buf.toString('latin1', c + 1, end).trim();
    else if (name === 'connection') conn ??= buf.toString('latin1', c + 1, end).trim();
  }
  const status = Number(m[2]);
  let framing: Framing;
  if (method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) framing = NO_BODY;
  else if (/(^|,)\s*chunked\s*$/i.test(te ?? '')) framing = { kind: 'chunked' };
  else if (cl !== undefined && /^\d+$/.test(cl)) framing = Number(cl) ? { kind: 'length', n: Number(cl) } : NO_BODY;
  else framing = { kind: 'close' };
  return { status, framing, close: closes(m[1], conn) };
}

const NO_BODY: Framing = { kind: 'none' };

/** Where the line from `at` to the LF at `eol` ends: one CR before the LF dropped. */
export function lineEnd(buf: Buffer, at: number, eol: number): number {
  return eol > at && buf[eol - 1] === 13 ? eol - 1 : eol;
}

/** Whether a message of HTTP `version` with this Connection header ends its connection. */
export function closes(version: string, connection = ''): boolean {
  if (/\bclose\b/i.test(connection)) return true;
  return version === 'HTTP/1.0' && !/\bkeep-alive\b/i.test(connection);
}

const STATUS_LINE = /^(HTTP\/1\.[01]) (\d{3})(?: (.*))?$/;

/** Every value of header `name`, in order. */
export function headerValues(raw: readonly string[], name: string): string[] {
  const n = name.toLowerCase();
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i].length === n.length && raw[i].toLowerCase() === n) out.push(raw[i + 1]);
  return out;
}

export function header(raw: readonly string[], name: string): string | undefined {
  const n = name.toLowerCase();
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i].length === n.length && raw[i].toLowerCase() === n) return raw[i + 1];
  return undefined;
}

/** How a message's body is delimited. */
export type Framing = { kind: 'none' } | { kind: 'length'; n: number } | { kind: 'chunked' } | { kind: 'close' };

/**
 * Counts the bytes of one body as they pass. feed() returns how many of the
 * given bytes belong to the body; `done` once it is complete. Chunked bodies
 * are scanned for chunk sizes and the end, not decoded.
 *
 * `strict` (request bodies): chunks read as Go's net/http/internal
 * chunkedReader reads them, and anything it could read another way refused
 * at its first byte (`broken`, feed() returns the count before it): a size
 * line is 1-13 hex digits (Go: up to 16) and CRLF (no extensions, no bare LF,
 * no spaces), each chunk's data is followed by exactly CRLF, the last chunk
 * by CRLF (no trailer fields). Lenient (dockerd's answers): a size line's
 * extension and a bare LF are passed over, trailer lines up to the blank one.
 */
export class BodyScanner {
  done = false;
  /** The chunked scanner found a syntax error (the connection cannot be framed further). */
  broken = false;
  private remaining = 0;
  private state: 'size' | 'ext' | 'data' | 'data-end' | 'trailer' = 'size';
  /** In 'size' the digits read so far; in 'trailer' the bytes of the current line. */
  private digits = 0;
  private cr = false;

  constructor(private readonly framing: Framing, private readonly strict = false) {
    if (framing.kind === 'none') this.done = true;
    if (framing.kind === 'length') this.remaining = framing.n;
  }

  feed(buf: Buffer): number {
    if (this.done) return 0;
    const f = this.framing;
    if (f.kind === 'close') return buf.length;
    if (f.kind === 'length') {
      const n = Math.min(buf.length, this.remaining);
      this.remaining -= n;
      if (this.remaining === 0) this.done = true;
      return n;
    }
    let i = 0;
    const bad = () => {
      this.broken = true;
      this.done = true;
      return i;
    };
    while (i < buf.length && !this.done) {
      if (this.state === 'data') {
        const n = Math.min(buf.length - i, this.remaining);
        this.remaining -= n;
        if (this.remaining === 0) this.state = 'data-end';
        i += n;
        continue;
      }
      const b = buf[i];
      if (b !== 10) {
        if (this.cr && this.strict) return bad();
        this.cr = false;
        if (b === 13 && (this.state !== 'size' || this.digits > 0)) this.cr = true;
        else if (this.state === 'size' && this.digits < (this.strict ? 13 : 16) && isHex(b)) {
          this.remaining = this.remaining * 16 + parseInt(String.fromCharCode(b), 16);
          this.digits++;
        } else if (this.strict || (this.state === 'size' && this.digits === 0)) return bad();
        else if (this.state === 'size') this.state = 'ext';
        else if (this.state === 'trailer') this.digits++;
        else if (this.state === 'data-end') return bad();
        i++;
        continue;
      }
      if ((this.strict && !this.cr) || (this.state === 'size' && this.digits === 0)) return bad();
      i++;
      this.cr = false;
      if (this.state === 'size' || this.state === 'ext') {
        this.state = this.remaining === 0 ? 'trailer' : 'data';
        this.digits = 0;
      } else if (this.state === 'data-end') this.state = 'size';
      else if (this.digits === 0) this.done = true;
      else this.digits = 0; // a trailer field line (lenient)
    }
    return i;
  }
}

function isHex(b: number): boolean {
  return (b >= 48 && b <= 57) || (b >= 65 && b <= 70) || (b >= 97 && b <= 102);
}
