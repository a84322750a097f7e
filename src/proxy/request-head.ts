/**
 * One decision per request head, made the way dockerd (Go net/http +
 * gorilla/mux) will read the same bytes: forward it (with its framing, the
 * route dockerd dispatches it to, and whether an Upgrade is honoured), or
 * refuse it with a Docker-shaped error and close. Every input on which two
 * HTTP readers could disagree is either read as Go reads it or refused, so a
 * request cannot reach dockerd without the proxy having seen it as dockerd
 * does (docs/proxy-framing.md has the table, with the Go source of each row).
 * Pure: bytes in, decision out.
 */
import { type Framing, type Head, headerValues as values, lineEnd } from './framing';
import { checkRequestTarget, isHijackRoute, type RequestTarget } from './request-target';
import { webRefusal, type WebGuardPolicy } from './web-guard';

export interface HeadPolicy extends WebGuardPolicy {
  /** A header whose exact value exempts a request from the Host check (the proxy's own loop probe). */
  probe?: { header: string; nonce: string };
}

export type HeadDecision =
  | {
      action: 'forward';
      head: Head;
      framing: Framing;
      /** As dockerd's router reads it (unversioned, decoded). */
      target: RequestTarget;
      /** A route where Docker hijacks the connection (attach, exec start, /session, /grpc, attach/ws). */
      hijack: boolean;
      /** Asks for an Upgrade on a hijack route: raw both ways once dockerd answers 101. */
      upgrade: boolean;
    }
  | { action: 'refuse'; status: 400 | 403 | 417; message: string };

type Refusal = Extract<HeadDecision, { action: 'refuse' }>;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const refuse = (status: Refusal['status'], message: string): Refusal => ({ action: 'refuse', status, message: `calico proxy: ${message}` });

/**
 * Parses a request head strictly (`size` bytes of `buf`, ending at its blank
 * line as framing.headEnd found it). Lines end at LF with one CR before it
 * dropped, as Go's textproto.Reader.ReadLine does (so the LF-only requests of
 * old clients stay readable); anything else Go could read another way is refused.
 */
export function parseRequestHeadStrict(buf: Buffer, size: number): Head | Refusal {
  // A CR anywhere but before LF, NUL, other controls: Go 1.19's textproto keeps them in the value, newer Go refuses.
  // (Read as bytes, not as a string split in lines: this runs for every request.)
  for (let i = 0; i < size; i++) {
    const c = buf[i];
    if (c >= 32 ? c === 127 : c !== 9 && c !== 10 && !(c === 13 && i + 1 < size && buf[i + 1] === 10)) {
      return refuse(400, 'malformed HTTP request: a control character in the request head');
    }
  }
  const text = buf.toString('latin1', 0, size); // one string; its parts are slices of it (latin1: byte i is char i)
  let eol = buf.indexOf(10);
  const start = /^(\S+) (\S+) (\S+)$/.exec(text.slice(0, lineEnd(buf, 0, eol)));
  if (!start || !TOKEN.test(start[1])) return refuse(400, 'malformed HTTP request: the request line is not "METHOD target HTTP/1.1"');
  const [, method, target, version] = start;
  if (!/^[A-Z]+$/.test(method)) {
    return refuse(400, `method ${JSON.stringify(method)} is refused: Docker's router matches upper-case methods only`);
  }
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') return refuse(400, `${version.slice(0, 20)} is not supported: HTTP/1.1 or HTTP/1.0`);
  const rawHeaders: string[] = [];
  for (let at = eol + 1; at < size; at = eol + 1) {
    eol = buf.indexOf(10, at);
    const end = lineEnd(buf, at, eol);
    if (end === at) break; // the blank line (headEnd: the first is the head's last)
    if (buf[at] === 32 || buf[at] === 9) {
      // obs-fold: Go's textproto joins it to the header above (readContinuedLineSlice).
      return refuse(400, 'malformed HTTP request: a folded header line (obs-fold)');
    }
    const c = buf.indexOf(58, at);
    const name = c > at && c < end ? text.slice(at, c) : '';
    if (!TOKEN.test(name)) return refuse(400, `malformed HTTP request: header line ${JSON.stringify(text.slice(at, end).slice(0, 60))}`);
    // Go's textproto trims spaces and tabs only.
    let v = c + 1;
    let w = end;
    while (v < w && (buf[v] === 32 || buf[v] === 9)) v++;
    while (w > v && (buf[w - 1] === 32 || buf[w - 1] === 9)) w--;
    rawHeaders.push(name, text.slice(v, w));
  }
  return { line: [method, target, version], rawHeaders, size };
}

/**
 * The request body's framing as Go's transfer.go reads it
 * (transferReader.parseTransferEncoding, fixLength), where Go and another
 * reader could disagree, refused.
 */
export function requestFramingStrict(h: Head): Framing | Refusal {
  const te = values(h.rawHeaders, 'transfer-encoding');
  const cl = values(h.rawHeaders, 'content-length');
  if (te.length) {
    if (h.line[2] === 'HTTP/1.0') return refuse(400, 'Transfer-Encoding on an HTTP/1.0 request is refused (Docker ignores it and reads Content-Length)');
    if (te.length !== 1 || te[0].toLowerCase() !== 'chunked') return refuse(400, `unsupported transfer encoding ${JSON.stringify(te.join(', ').slice(0, 60))}: only "chunked"`);
    if (cl.length) return refuse(400, 'a request with both Transfer-Encoding and Content-Length is refused');
    return { kind: 'chunked' };
  }
  if (!cl.length) return { kind: 'none' };
  if (cl.some((v) => v !== cl[0])) return refuse(400, `conflicting Content-Length headers ${JSON.stringify(cl.slice(0, 4))}`);
  const n = Number(cl[0]);
  if (!/^\d+$/.test(cl[0]) || !Number.isSafeInteger(n)) return refuse(400, `bad Content-Length ${JSON.stringify(cl[0].slice(0, 30))}`);
  return n ? { kind: 'length', n } : { kind: 'none' };
}

/** The bytes of golang.org/x/net/http/httpguts validHostByte: letters, digits and !$%&'()*+,-.:;=[]_~ (an empty Host is valid). */
const VALID_HOST = /^[0-9A-Za-z!$%&'()*+,\-.:;=[\]_~]*$/;

/** The one decision per request head: see the module comment. */
export function decideRequest(buf: Buffer, size: number, policy?: HeadPolicy): HeadDecision {
  const head = parseRequestHeadStrict(buf, size);
  if ('action' in head) return head;
  const framing = requestFramingStrict(head);
  if ('action' in framing) return framing;
  const hosts = values(head.rawHeaders, 'host');
  // Go's readRequest: an HTTP/1.1 request without Host is refused (and closed, as above); 1.0 may leave it out.
  if (!hosts.length && head.line[2] === 'HTTP/1.1') return refuse(400, 'missing required Host header');
  if (hosts.length > 1) return refuse(400, 'too many Host headers');
  // Go's readRequest refuses a Host with a byte httpguts.ValidHostHeader does not allow, and closes
  // (with the body unread: a reset that can beat its 400 to us). Refused here with Go's words.
  if (hosts.length === 1 && !VALID_HOST.test(hosts[0]!)) return refuse(400, `malformed Host header ${JSON.stringify(hosts[0]!.slice(0, 60))}`);
  // Go's server answers 417 to any Expect but 100-continue before a handler runs (server.go, readRequest's caller).
  const expect = values(head.rawHeaders, 'expect')[0];
  if (expect !== undefined && expect.toLowerCase() !== '100-continue') {
    return refuse(417, `unsupported Expect header ${JSON.stringify(expect.slice(0, 100))}: only 100-continue is understood`);
  }
  const t = checkRequestTarget(head.line[1]);
  if (!t.ok) return refuse(400, t.message);
  if (policy) {
    const probe = policy.probe && values(head.rawHeaders, policy.probe.header)[0] === policy.probe.nonce;
    const why = webRefusal(head.rawHeaders, probe ? { ...policy, checkHost: false } : policy);
    if (why) return refuse(403, why);
  }
  const method = head.line[0];
  const hijack = isHijackRoute(method, t.target.path);
  const upgrade = hijack && values(head.rawHeaders, 'upgrade').length > 0 && /(^|,)\s*upgrade\s*(,|$)/i.test(values(head.rawHeaders, 'connection').join(','));
  return { action: 'forward', head, framing, target: t.target, hijack, upgrade };
}
