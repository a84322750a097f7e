// The proxy's reading of a request head against dockerd's (Go net/http +
// gorilla/mux as moby 20.10 sets it up), case by case on raw bytes. Each row
// says what dockerd does with the bytes (the Go source that decides it) and
// what the proxy does: read it the same way, or refuse it and close.
// docs/proxy-framing.md holds the same table for readers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyScanner, headEnd } from '../../src/proxy/framing';
import { decideRequest, type HeadPolicy } from '../../src/proxy/request-head';
import { checkRequestTarget, cleanPath, isHijackRoute, parseRequestTarget, unescapePath } from '../../src/proxy/request-target';
import { checkAllowOrigin, isLoopbackHostHeader, sameOrigin, webRefusal } from '../../src/proxy/web-guard';

const POLICY: HeadPolicy = { checkHost: true, allowOrigins: ['http://localhost:9000'], probe: { header: 'X-Probe', nonce: 'n0nce' } };

/** 'forward <framing> <path>[ upgrade]' or 'refuse <status>'. */
function decide(head: string, policy: HeadPolicy | undefined = POLICY): string {
  const buf = Buffer.from(head, 'latin1');
  const end = headEnd(buf);
  assert.ok(end > 0, `no head end in ${JSON.stringify(head)}`);
  const d = decideRequest(buf, end, policy);
  if (d.action === 'refuse') {
    assert.match(d.message, /^calico proxy: /);
    return `refuse ${d.status}`;
  }
  const f = d.framing.kind === 'length' ? `length:${d.framing.n}` : d.framing.kind;
  return `forward ${f} ${d.target.path}${d.upgrade ? ' upgrade' : ''}`;
}

const H = 'Host: 127.0.0.1:2377\r\n';
const CREATE = `POST /v1.41/containers/create HTTP/1.1\r\n${H}`;

interface Row {
  case: string;
  head: string;
  /** What dockerd (Go) does, and where Go decides it. */
  dockerd: string;
  proxy: string;
}

const TABLE: Row[] = [
  { case: 'plain create', head: `${CREATE}Content-Length: 2\r\n\r\n`, dockerd: 'routes to create', proxy: 'forward length:2 /containers/create' },
  {
    case: 'obs-fold',
    head: `${CREATE}X-A: a\r\n Content-Length: 5\r\n\r\n`,
    dockerd: 'folds the line into X-A; no Content-Length (net/textproto reader.go readContinuedLineSlice)',
    proxy: 'refuse 400',
  },
  { case: 'folded first header line', head: `POST /containers/create HTTP/1.1\r\n X: 1\r\n${H}\r\n`, dockerd: '400 malformed MIME header initial line (textproto ReadMIMEHeader)', proxy: 'refuse 400' },
  {
    case: 'Transfer-Encoding on HTTP/1.0',
    head: `POST /containers/create HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n`,
    dockerd: 'ignores TE, reads Content-Length (net/http transfer.go parseTransferEncoding, issue 12785)',
    proxy: 'refuse 400',
  },
  {
    case: 'Transfer-Encoding with Content-Length',
    head: `${CREATE}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n`,
    dockerd: 'chunked; Content-Length deleted (transfer.go parseTransferEncoding)',
    proxy: 'refuse 400',
  },
  { case: 'TE gzip, chunked', head: `${CREATE}Transfer-Encoding: gzip, chunked\r\n\r\n`, dockerd: '501 unsupported transfer encoding (transfer.go parseTransferEncoding)', proxy: 'refuse 400' },
  { case: 'TE twice', head: `${CREATE}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`, dockerd: '501 too many transfer encodings (parseTransferEncoding)', proxy: 'refuse 400' },
  { case: 'TE Chunked (case)', head: `${CREATE}Transfer-Encoding: Chunked\r\n\r\n`, dockerd: 'chunked (ascii.EqualFold)', proxy: 'forward chunked /containers/create' },
  { case: 'duplicate equal Content-Length', head: `${CREATE}Content-Length: 3\r\nContent-Length: 3\r\n\r\n`, dockerd: 'one Content-Length, 3 (transfer.go fixLength, issue 16490)', proxy: 'forward length:3 /containers/create' },
  { case: 'duplicate differing Content-Length', head: `${CREATE}Content-Length: 3\r\nContent-Length: 40\r\n\r\n`, dockerd: '400 multiple Content-Length headers (fixLength)', proxy: 'refuse 400' },
  { case: 'Content-Length +5', head: `${CREATE}Content-Length: +5\r\n\r\n`, dockerd: '400 bad Content-Length (fixLength → strconv.ParseUint)', proxy: 'refuse 400' },
  { case: 'Content-Length list', head: `${CREATE}Content-Length: 5, 5\r\n\r\n`, dockerd: '400 bad Content-Length (ParseUint)', proxy: 'refuse 400' },
  { case: 'Content-Length empty', head: `${CREATE}Content-Length:\r\n\r\n`, dockerd: 'no body (fixLength deletes an empty value)', proxy: 'refuse 400' },
  { case: 'space before colon', head: `${CREATE}Content-Length : 5\r\n\r\n`, dockerd: 'Go 1.19 keeps the key "Content-Length " (not Content-Length); later Go refuses (textproto readMIMEHeader)', proxy: 'refuse 400' },
  { case: 'bare LF lines', head: 'GET /_ping HTTP/1.1\nHost: localhost\n\n', dockerd: 'reads it: a line ends at LF, a CR before it dropped (textproto Reader.ReadLine)', proxy: 'forward none /_ping' },
  { case: 'bare CR inside a line', head: `${CREATE}X-A: a\rContent-Length: 5\r\n\r\n`, dockerd: 'Go 1.19 keeps the CR in X-A\'s value; later Go refuses it', proxy: 'refuse 400' },
  { case: 'lower-case method', head: `post /v1.41/containers/create HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\n`, dockerd: 'method "post" is valid (server.go validMethod); mux Methods("POST") does not match it: 404 (mux route.go methodMatcher)', proxy: 'refuse 400' },
  {
    case: 'absolute-form target',
    head: `POST http://x/v1.41/containers/create HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\n`,
    dockerd: 'routes to create: ParseRequestURI takes it, mux matches URL.Path (server.go readRequest)',
    proxy: 'refuse 400',
  },
  { case: 'asterisk-form', head: `OPTIONS * HTTP/1.1\r\n${H}\r\n`, dockerd: 'routed nowhere: 404', proxy: 'refuse 400' },
  { case: 'version with a trailing dot', head: `POST /v1.41./containers/create HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\n`, dockerd: 'routes to create: versionMatcher /v{version:[0-9.]+} (moby api/server/server.go createMux)', proxy: 'forward length:2 /containers/create' },
  { case: 'double slash', head: `POST //containers/create HTTP/1.1\r\n${H}\r\n`, dockerd: '301 to /containers/create (mux.go Router.ServeHTTP cleanPath; moby sets no SkipClean)', proxy: 'refuse 400' },
  { case: 'dot segment', head: `POST /v1.41/./containers/create HTTP/1.1\r\n${H}\r\n`, dockerd: '301 (cleanPath)', proxy: 'refuse 400' },
  { case: 'percent-encoded letter', head: `POST /containers/%63reate HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\n`, dockerd: 'routes to create: mux matches the decoded URL.Path (moby sets no UseEncodedPath)', proxy: 'forward length:2 /containers/create' },
  { case: 'percent-encoded slash', head: `POST /v1.41/containers%2Fcreate HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\n`, dockerd: 'routes to create (decoded URL.Path)', proxy: 'forward length:2 /containers/create' },
  { case: 'encoded dot segment', head: `POST /v1.41/x/%2e%2e/containers/create HTTP/1.1\r\n${H}\r\n`, dockerd: '301 (cleanPath of the decoded path)', proxy: 'refuse 400' },
  { case: 'trailing slash', head: `POST /v1.41/containers/create/ HTTP/1.1\r\n${H}\r\n`, dockerd: '404: templates match the whole path (no StrictSlash)', proxy: 'forward none /containers/create/' },
  { case: 'malformed escape', head: `GET /containers/%zz/json HTTP/1.1\r\n${H}\r\n`, dockerd: '400 (net/url unescape via ParseRequestURI)', proxy: 'refuse 400' },
  { case: 'fragment', head: `POST /containers/create#x HTTP/1.1\r\n${H}\r\n`, dockerd: 'path "/containers/create#x": 404', proxy: 'refuse 400' },
  { case: 'HTTP/2.0 request line', head: `GET /_ping HTTP/2.0\r\n${H}\r\n`, dockerd: '505 (server.go readRequest: ProtoMajor != 1)', proxy: 'refuse 400' },
  { case: 'extra space in request line', head: `GET /_ping  HTTP/1.1\r\n${H}\r\n`, dockerd: '400 malformed HTTP version (parseRequestLine)', proxy: 'refuse 400' },
  { case: 'two Host headers', head: `GET /_ping HTTP/1.1\r\n${H}${H}\r\n`, dockerd: '400 too many Host headers (readRequest)', proxy: 'refuse 400' },
  { case: 'Host with a space', head: `${CREATE}Host: a b\r\nContent-Length: 6\r\n\r\n`.replace(H, ''), dockerd: '400 malformed Host header (readRequest: httpguts.ValidHostHeader), then closes with the body unread', proxy: 'refuse 400' },
  { case: 'HTTP/1.1 without Host', head: 'GET /_ping HTTP/1.1\r\n\r\n', dockerd: '400 missing required Host header (readRequest: ProtoAtLeast(1, 1) && !haveHost), then closes', proxy: 'refuse 400' },
  { case: 'HTTP/1.0 without Host', head: 'GET /_ping HTTP/1.0\r\n\r\n', dockerd: 'takes it (Host is required from 1.1 on)', proxy: 'forward none /_ping' },
  { case: 'Host with a bracketed IPv6 address and a port', head: 'GET /_ping HTTP/1.1\r\nHost: [::1]:2377\r\n\r\n', dockerd: 'takes it (validHostByte has [ ] :)', proxy: 'forward none /_ping' },
  { case: 'Upgrade on /_ping', head: `GET /_ping HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n`, dockerd: 'answers framed: only hijacking handlers act on Upgrade', proxy: 'forward none /_ping' },
  { case: 'Upgrade on attach', head: `POST /v1.41/containers/abc/attach?stream=1 HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n`, dockerd: 'hijacks, 101 (router/container attach)', proxy: 'forward none /containers/abc/attach upgrade' },
  { case: 'Upgrade on exec start', head: `POST /exec/abc/start HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 2\r\n\r\n`, dockerd: 'hijacks, 101', proxy: 'forward length:2 /exec/abc/start upgrade' },
  { case: 'Upgrade on /session', head: `POST /session HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n`, dockerd: 'hijacks, 101 (router/session)', proxy: 'forward none /session upgrade' },
  { case: 'Upgrade on create', head: `${CREATE}Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 2\r\n\r\n`, dockerd: 'answers framed (create does not hijack)', proxy: 'forward length:2 /containers/create' },
  { case: 'Origin', head: `${CREATE}Origin: http://evil.example\r\nContent-Length: 2\r\n\r\n`, dockerd: 'takes it', proxy: 'refuse 403' },
  { case: 'Sec-Fetch-Site', head: `${CREATE}Sec-Fetch-Site: cross-site\r\nContent-Length: 2\r\n\r\n`, dockerd: 'takes it', proxy: 'refuse 403' },
  { case: 'DNS-rebound Host', head: 'GET /_ping HTTP/1.1\r\nHost: evil.example:2377\r\n\r\n', dockerd: 'takes it', proxy: 'refuse 403' },
  { case: 'allowed Origin', head: `${CREATE}Origin: http://localhost:9000\r\nSec-Fetch-Mode: cors\r\nContent-Length: 2\r\n\r\n`, dockerd: 'takes it', proxy: 'forward length:2 /containers/create' },
];

for (const row of TABLE) {
  test(`Go agreement: ${row.case} (dockerd: ${row.dockerd})`, () => {
    assert.equal(decide(row.head), row.proxy);
  });
}

test('request head: control bytes, header names, methods, versions', () => {
  assert.equal(decide(`GET /_ping HTTP/1.1\r\n${H}X\0: y\r\n\r\n`), 'refuse 400');
  assert.equal(decide(`GET /_ping HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`), 'refuse 400');
  assert.equal(decide(`GET /_ping HTTP/1.1\r\n${H}X-A: tab\tinside\r\n\r\n`), 'forward none /_ping');
  assert.equal(decide(`GET /_ping HTTP/1.1\r\n${H}: nameless\r\n\r\n`), 'refuse 400');
  assert.equal(decide(`GET /_ping HTTP/1.1\r\n${H}no colon\r\n\r\n`), 'refuse 400');
  assert.equal(decide(`GET\x00 /_ping HTTP/1.1\r\n${H}\r\n`), 'refuse 400');
  assert.equal(decide(`GET /_p\x7fing HTTP/1.1\r\n${H}\r\n`), 'refuse 400');
  assert.equal(decide('GET /_ping HTTP/1.0\r\n\r\n'), 'forward none /_ping');
  assert.equal(decide(`\r\nGET /_ping HTTP/1.1\r\n${H}\r\n`.slice(2)), 'forward none /_ping');
  assert.equal(decide(`GET /_ping HTTP/1.1\r\n${H}Content-Length: 99999999999999999999\r\n\r\n`), 'refuse 400');
  assert.equal(decide(`GET /_ping HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\n`), 'refuse 400');
  // A Connection list naming upgrade among others still asks for it (attach sends "Upgrade").
  assert.equal(decide(`POST /containers/a/attach HTTP/1.1\r\n${H}Connection: keep-alive, Upgrade\r\nUpgrade: tcp\r\n\r\n`), 'forward none /containers/a/attach upgrade');
  assert.equal(decide(`POST /containers/a/attach HTTP/1.1\r\n${H}Upgrade: tcp\r\n\r\n`), 'forward none /containers/a/attach');
});

test('web pages: Origin, Sec-Fetch-*, Host; unix listeners skip Host; the loop probe skips Host only with its nonce', () => {
  const unix: HeadPolicy = { checkHost: false, allowOrigins: [] };
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n', unix), 'forward none /_ping');
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n', unix), 'forward none /_ping');
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: docker\r\nOrigin: null\r\n\r\n', unix), 'refuse 403');
  // Socket names some clients send over TCP too: in no public DNS zone, no page is served under them.
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: docker.sock\r\n\r\n'), 'forward none /_ping');
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n'), 'forward none /_ping');
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: docker.evil.example\r\n\r\n'), 'refuse 403');
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: myhost:2377\r\nX-Probe: n0nce\r\n\r\n'), 'forward none /_ping');
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: myhost:2377\r\nX-Probe: guess\r\n\r\n'), 'refuse 403');
  assert.equal(decide('GET /_ping HTTP/1.1\r\nHost: myhost:2377\r\nX-Probe: n0nce\r\nOrigin: http://evil.example\r\n\r\n'), 'refuse 403');
  // No Host at all (HTTP/1.0 clients): nothing a browser sends.
  assert.equal(decide('GET /_ping HTTP/1.0\r\n\r\n'), 'forward none /_ping');
  for (const h of ['127.0.0.1', '127.0.0.1:2377', 'localhost', 'LOCALHOST:2377', '[::1]', '[::1]:2377', '127.1.2.3:80']) assert.ok(isLoopbackHostHeader(h), h);
  for (const h of ['evil.example', 'evil.example:2377', '127.0.0.1.evil.example', 'localhost.', 'localhost.evil.example', '127.0.0.256', '[::2]', '0.0.0.0:2377', '', 'localhost:x', 'x']) assert.ok(!isLoopbackHostHeader(h), h);
  const msg = webRefusal(['Host', '127.0.0.1', 'Origin', 'http://evil.example'], { checkHost: true, allowOrigins: [] });
  assert.match(msg ?? '', /^requests from web pages are refused: Origin "http:\/\/evil.example" is not allowed/);
  // Two Origins: neither is trusted.
  assert.ok(webRefusal(['Origin', 'http://localhost:9000', 'Origin', 'http://evil.example'], POLICY));
  assert.ok(sameOrigin('HTTP://LocalHost:9000/', 'http://localhost:9000'));
  assert.equal(checkAllowOrigin('http://localhost:9000/'), 'http://localhost:9000');
  assert.throws(() => checkAllowOrigin('localhost:9000'), /not an origin/);
  assert.throws(() => checkAllowOrigin('http://a/path'), /not an origin/);
});

test('request target: mux reading (decoded, version [0-9.]+, unclean refused)', () => {
  assert.deepEqual(parseRequestTarget('/v1.41./containers/create?name=a').path, '/containers/create');
  assert.equal(parseRequestTarget('/v1.41./containers/create').apiVersion, '1.41.');
  assert.equal(parseRequestTarget('/v./containers/create').path, '/containers/create');
  assert.equal(parseRequestTarget('/v/containers/create').path, '/v/containers/create');
  assert.equal(parseRequestTarget('/version').path, '/version');
  assert.equal(parseRequestTarget('/v1.41/version').apiVersion, '1.41');
  assert.equal(parseRequestTarget('/v1.41/containers/create?name=web').query.get('name'), 'web');
  assert.equal(unescapePath('/a%2Fb%63'), '/a/bc');
  assert.equal(unescapePath('/a+b'), '/a+b');
  assert.equal(unescapePath('/a%zz'), undefined);
  assert.equal(unescapePath('/a%4'), undefined);
  assert.equal(cleanPath('//a/./b/../c/'), '/a/c/');
  assert.equal(cleanPath('/..'), '/');
  assert.equal(cleanPath(''), '/');
  assert.ok(checkRequestTarget('/containers/json?filters=%7B%22a%22%3A1%7D').ok);
  assert.ok(!checkRequestTarget('/a/../containers/create').ok);
  assert.ok(!checkRequestTarget('http://x/').ok);
  assert.ok(isHijackRoute('POST', '/containers/a/attach'));
  assert.ok(isHijackRoute('POST', '/exec/a/start'));
  assert.ok(isHijackRoute('POST', '/grpc') && isHijackRoute('POST', '/session'));
  assert.ok(isHijackRoute('GET', '/containers/a/attach/ws'));
  assert.ok(!isHijackRoute('GET', '/_ping') && !isHijackRoute('POST', '/containers/create') && !isHijackRoute('GET', '/containers/a/attach'));
});

/** Feeds a strict scanner byte by byte and in one piece; both must agree. */
function scan(body: string): { taken: number; done: boolean; broken: boolean } {
  const whole = new BodyScanner({ kind: 'chunked' }, true);
  const taken = whole.feed(Buffer.from(body, 'latin1'));
  const bytewise = new BodyScanner({ kind: 'chunked' }, true);
  let n = 0;
  for (let i = 0; i < body.length && !bytewise.done; i++) n += bytewise.feed(Buffer.from(body[i], 'latin1'));
  assert.deepEqual({ n, done: bytewise.done, broken: bytewise.broken }, { n: taken, done: whole.done, broken: whole.broken }, body);
  return { taken, done: whole.done, broken: whole.broken };
}

test('chunked request bodies: Go\'s chunkedReader grammar, anything it could read another way refused at its first byte', () => {
  const ok = '5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n';
  assert.deepEqual(scan(ok + 'GET /'), { taken: ok.length, done: true, broken: false });
  assert.deepEqual(scan('5\r\nhel'), { taken: 6, done: false, broken: false });
  // Chunk extension: Go drops it (internal/chunked.go removeChunkExtension): refused at ";".
  assert.deepEqual(scan('5;x=y\r\nhello\r\n0\r\n\r\n'), { taken: 1, done: true, broken: true });
  // Bare LF after the size: Go 1.19 accepts, Go 1.24.2+ refuses (CVE-2025-22871).
  assert.deepEqual(scan('5\nhello\r\n0\r\n\r\n'), { taken: 1, done: true, broken: true });
  // Data not followed by CRLF: Go "malformed chunked encoding".
  assert.deepEqual(scan('5\r\nhelloXX\r\n0\r\n\r\n'), { taken: 8, done: true, broken: true });
  // Trailer fields: Go reads them (transfer.go body.readTrailer).
  assert.deepEqual(scan('0\r\nX: y\r\n\r\n'), { taken: 3, done: true, broken: true });
  // Spaces, signs, empty sizes, 14 hex digits.
  assert.ok(scan('5 \r\nhello\r\n0\r\n\r\n').broken);
  assert.ok(scan('\r\n').broken);
  assert.ok(scan('-5\r\n').broken);
  assert.ok(scan('00000000000005\r\nhello\r\n0\r\n\r\n').broken);
  assert.ok(!scan('0000000000005\r\nhello\r\n0\r\n\r\n').broken);
  // The response side stays lenient.
  const lenient = new BodyScanner({ kind: 'chunked' });
  const lb = '5;x\r\nhello\r\n0\r\n\r\n';
  assert.equal(lenient.feed(Buffer.from(lb)), lb.length);
  assert.ok(lenient.done && !lenient.broken);
});
