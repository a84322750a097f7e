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

/** Parses a complete head (`buf` holds at least `size` bytes). Undefined when it is not HTTP/1.x. */
export function parseHead(buf: Buffer, size: number, kind: 'request' | 'response'): Head | undefined {
  const lines = buf.subarray(0, size).toString('latin1').split(/\r?\n/);
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  const start = lines.shift() ?? '';
  let line: [string, string, string];
  if (kind === 'request') {
    const m = /^([A-Za-z]+) (\S+) (HTTP\/1\.[01])$/.exec(start);
    if (!m) return undefined;
    line = [m[1], m[2], m[3]];
  } else {
    const m = /^(HTTP\/1\.[01]) (\d{3})(?: (.*))?$/.exec(start);
    if (!m) return undefined;
    line = [m[1], m[2], m[3] ?? ''];
  }
  const rawHeaders: string[] = [];
  for (const l of lines) {
    const c = l.indexOf(':');
    if (c <= 0) return undefined;
    rawHeaders.push(l.slice(0, c).trim(), l.slice(c + 1).trim());
  }
  return { line, rawHeaders, size };
}

export function header(raw: readonly string[], name: string): string | undefined {
  const n = name.toLowerCase();
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i].toLowerCase() === n) return raw[i + 1];
  return undefined;
}

function chunkedTe(raw: readonly string[]): boolean | undefined {
  const te = header(raw, 'transfer-encoding');
  return te === undefined ? undefined : /(^|,)\s*chunked\s*$/i.test(te);
}

/** How a message's body is delimited. */
export type Framing = { kind: 'none' } | { kind: 'length'; n: number } | { kind: 'chunked' } | { kind: 'close' };

export function requestFraming(h: Head): Framing | undefined {
  const chunked = chunkedTe(h.rawHeaders);
  if (chunked) return { kind: 'chunked' };
  if (chunked === false) return undefined; // a request body must be chunked or counted
  const cl = header(h.rawHeaders, 'content-length');
  if (cl === undefined) return { kind: 'none' };
  const n = Number(cl);
  return /^\d+$/.test(cl.trim()) && Number.isSafeInteger(n) ? (n ? { kind: 'length', n } : { kind: 'none' }) : undefined;
}

export function responseFraming(h: Head, method: string): Framing {
  const status = Number(h.line[1]);
  if (method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) return { kind: 'none' };
  if (chunkedTe(h.rawHeaders)) return { kind: 'chunked' };
  const cl = header(h.rawHeaders, 'content-length');
  if (cl !== undefined && /^\d+$/.test(cl.trim())) return Number(cl) ? { kind: 'length', n: Number(cl) } : { kind: 'none' };
  return { kind: 'close' };
}

/**
 * Counts the bytes of one body as they pass. feed() returns how many of the
 * given bytes belong to the body; `done` once it is complete. Chunked bodies
 * are scanned for chunk sizes and the trailer's blank line, not decoded.
 */
export class BodyScanner {
  done = false;
  /** The chunked scanner found a syntax error (the connection cannot be framed further). */
  broken = false;
  private remaining = 0;
  private state: 'size' | 'data' | 'data-end' | 'trailer' = 'size';
  private line = '';
  /** Strict chunk grammar: in 'size' the digits read so far; in 'data-end'/'trailer' the CR seen. */
  private digits = 0;
  private cr = false;

  /**
   * `strict` (request bodies): chunks read as Go's net/http/internal
   * chunkedReader reads them, and anything it could read another way refused
   * at its first byte (`broken`, feed() returns the count before it): a size
   * line is 1-13 hex digits (Go: up to 16) and CRLF (no extensions, no bare LF, no spaces),
   * each chunk's data is followed by exactly CRLF, the last chunk by CRLF (no
   * trailer fields).
   */
  constructor(private readonly framing: Framing, private readonly strict = false) {
    if (framing.kind === 'none') this.done = true;
    if (framing.kind === 'length') this.remaining = framing.n;
  }

  feed(buf: Buffer): number {
    if (this.done) return 0;
    const f = this.framing;
    if (f.kind === 'chunked' && this.strict) return this.feedStrict(buf);
    if (f.kind === 'close') return buf.length;
    if (f.kind === 'length') {
      const n = Math.min(buf.length, this.remaining);
      this.remaining -= n;
      if (this.remaining === 0) this.done = true;
      return n;
    }
    let i = 0;
    while (i < buf.length && !this.done) {
      if (this.state === 'data') {
        i += this.takeData(buf.length - i);
        continue;
      }
      const b = buf[i++];
      if (b !== 10) {
        if (this.line.length < 4096) this.line += String.fromCharCode(b);
        continue;
      }
      const l = this.line.replace(/\r$/, '');
      this.line = '';
      if (this.state === 'size') {
        const m = /^([0-9a-fA-F]+)/.exec(l);
        if (!m) {
          this.broken = true;
          this.done = true;
          return i;
        }
        this.remaining = parseInt(m[1], 16);
        this.state = this.remaining === 0 ? 'trailer' : 'data';
      } else if (this.state === 'data-end') {
        this.state = 'size';
      } else if (l === '') {
        this.done = true;
      }
    }
    return i;
  }

  /** Of `available` bytes of chunk data, how many belong to the current chunk. */
  private takeData(available: number): number {
    const n = Math.min(available, this.remaining);
    this.remaining -= n;
    if (this.remaining === 0) this.state = 'data-end';
    return n;
  }

  private feedStrict(buf: Buffer): number {
    let i = 0;
    const bad = () => {
      this.broken = true;
      this.done = true;
      return i;
    };
    while (i < buf.length && !this.done) {
      if (this.state === 'data') {
        i += this.takeData(buf.length - i);
        continue;
      }
      const b = buf[i];
      if (!this.cr) {
        if (b === 13 && (this.state !== 'size' || this.digits > 0)) this.cr = true;
        else if (this.state === 'size' && this.digits < 13 && isHex(b)) {
          this.remaining = this.remaining * 16 + parseInt(String.fromCharCode(b), 16);
          this.digits++;
        } else return bad();
        i++;
        continue;
      }
      if (b !== 10) return bad();
      i++;
      this.cr = false;
      if (this.state === 'size') {
        this.digits = 0;
        this.state = this.remaining === 0 ? 'trailer' : 'data';
      } else if (this.state === 'data-end') {
        this.state = 'size';
        this.remaining = 0;
      } else this.done = true;
    }
    return i;
  }
}

function isHex(b: number): boolean {
  return (b >= 48 && b <= 57) || (b >= 65 && b <= 70) || (b >= 97 && b <= 102);
}
