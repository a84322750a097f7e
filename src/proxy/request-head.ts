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
import { type Framing, type Head, headerValues as values } from './framing';
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
/** Whether a head holds a control character other than tab and LF (which ends lines), a CR not before LF among them. */
function hasControl(t: string): boolean {
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c >= 32 ? c === 127 : c !== 9 && c !== 10 && !(c === 13 && t.charCodeAt(i + 1) === 10)) return true;
  }
  return false;
}

/** `l` from `from` without leading and trailing spaces and tabs (Go's textproto trims those two only). */
function trimSpaceTab(l: string, from: number): string {
  let a = from;
  let b = l.length;
  while (a < b && (l.charCodeAt(a) === 32 || l.charCodeAt(a) === 9)) a++;
  while (b > a && (l.charCodeAt(b - 1) === 32 || l.charCodeAt(b - 1) === 9)) b--;
  return l.slice(a, b);
}
const refuse = (status: Refusal['status'], message: string): Refusal => ({ action: 'refuse', status, message: `calico proxy: ${message}` });

/**
 * Parses a request head strictly (`size` bytes of `buf`, ending at its blank
 * line as framing.headEnd found it). Lines end at LF with one CR before it
 * dropped, as Go's textproto.Reader.ReadLine does (so the LF-only requests of
 * old clients stay readable); anything else Go could read another way is refused.
 */
export function parseRequestHeadStrict(buf: Buffer, size: number): Head | Refusal {
  const text = buf.subarray(0, size).toString('latin1');
  // A CR anywhere but before LF, NUL, other controls: Go 1.19's textproto keeps them in the value, newer Go refuses.
  if (hasControl(text)) return refuse(400, 'malformed HTTP request: a control character in the request head');
  const lines = text.split('\n');
  lines.pop(); // after the final LF
  lines.pop(); // the blank line
  for (let i = 0; i < lines.length; i++) if (lines[i].endsWith('\r')) lines[i] = lines[i].slice(0, -1);
  const start = /^(\S+) (\S+) (\S+)$/.exec(lines[0] ?? '');
  if (!start || !TOKEN.test(start[1])) return refuse(400, 'malformed HTTP request: the request line is not "METHOD target HTTP/1.1"');
  const [, method, target, version] = start;
  if (!/^[A-Z]+$/.test(method)) {
    return refuse(400, `method ${JSON.stringify(method)} is refused: Docker's router matches upper-case methods only`);
  }
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') return refuse(400, `${version.slice(0, 20)} is not supported: HTTP/1.1 or HTTP/1.0`);
  const rawHeaders: string[] = [];
  for (const l of lines.slice(1)) {
    if (l.startsWith(' ') || l.startsWith('\t')) {
      // obs-fold: Go's textproto joins it to the header above (readContinuedLineSlice).
      return refuse(400, 'malformed HTTP request: a folded header line (obs-fold)');
    }
    const c = l.indexOf(':');
    const name = c > 0 ? l.slice(0, c) : '';
    if (!TOKEN.test(name)) return refuse(400, `malformed HTTP request: header line ${JSON.stringify(l.slice(0, 60))}`);
    rawHeaders.push(name, trimSpaceTab(l, c + 1));
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

/** The one decision per request head: see the module comment. */
export function decideRequest(buf: Buffer, size: number, policy?: HeadPolicy): HeadDecision {
  const head = parseRequestHeadStrict(buf, size);
  if ('action' in head) return head;
  const framing = requestFramingStrict(head);
  if ('action' in framing) return framing;
  if (values(head.rawHeaders, 'host').length > 1) return refuse(400, 'too many Host headers');
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
  const connection = values(head.rawHeaders, 'connection').join(',');
  const upgrade = hijack && values(head.rawHeaders, 'upgrade').length > 0 && /(^|,)\s*upgrade\s*(,|$)/i.test(connection);
  return { action: 'forward', head, framing, target: t.target, hijack, upgrade };
}
