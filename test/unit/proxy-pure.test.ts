import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestTarget } from '../../src/proxy/request-target';
import { parseAddress, pointsAt, isLoopbackHost, formatAddress } from '../../src/listen/address';
import { endToEndHeaders, headerObject } from '../../src/proxy/headers';
import { checkListenPolicy } from '../../src/listen/listener';
import { firstWrite, MAX_GATHERED_BODY } from '../../src/proxy/hijack';
import { BodyScanner, headEnd, parseAnswerHead, scanAnswerHead } from '../../src/proxy/framing';
import { addressInUse, collides, swarmPortInterceptor } from '../../src/proxy/interceptors/swarm-init';
import { silentLogger } from '../../src/log/logger';
import { decideRequest, parseRequestHeadStrict, requestFramingStrict } from '../../src/proxy/request-head';
import type { Head } from '../../src/proxy/framing';
import { dockerErrorBody, dockerError } from '../../src/proxy/interceptor';
import { proxyOptionsFrom, dockerHostHint, DEFAULT_LISTEN, DEFAULT_DOCKER_UPSTREAM } from '../../src/cli/commands/node-proxy';
import { CliError } from '../../src/cli/errors';

test('request target: versioned and unversioned paths are the same call', () => {
  const v = parseRequestTarget('/v1.41/containers/create?name=web');
  assert.deepEqual([v.path, v.apiVersion, v.query.get('name')], ['/containers/create', '1.41', 'web']);
  const u = parseRequestTarget('/containers/create');
  assert.deepEqual([u.path, u.apiVersion], ['/containers/create', undefined]);
  assert.equal(parseRequestTarget('/v1.24/containers/abc/start').path, '/containers/abc/start');
  // Percent-encoding cannot slip a call past an interceptor (doubled slashes are refused before: checkRequestTarget).
  assert.equal(parseRequestTarget('/v1.41/containers/%63reate').path, '/containers/create');
  // As dockerd's router: the whole path, a trailing slash is another route.
  assert.equal(parseRequestTarget('/containers/create/').path, '/containers/create/');
  // A path segment that merely starts with v is not a version.
  assert.equal(parseRequestTarget('/version').path, '/version');
  assert.equal(parseRequestTarget('/v1.41/version').apiVersion, '1.41');
  assert.equal(parseRequestTarget('/containers/%zz/json').path, '/containers/%zz/json');
});

test('addresses: tcp and unix as docker spells them', () => {
  assert.deepEqual(parseAddress('tcp://127.0.0.1:2377', 'x'), { kind: 'tcp', host: '127.0.0.1', port: 2377 });
  assert.deepEqual(parseAddress('unix:///var/run/docker.sock', 'x'), { kind: 'unix', path: '/var/run/docker.sock' });
  assert.deepEqual(parseAddress('localhost:2377', 'x'), { kind: 'tcp', host: 'localhost', port: 2377 });
  assert.deepEqual(parseAddress('tcp://[::1]:2377', 'x'), { kind: 'tcp', host: '::1', port: 2377 });
  assert.deepEqual(parseAddress('tcp://10.0.0.1', 'x', 2376), { kind: 'tcp', host: '10.0.0.1', port: 2376 });
  assert.throws(() => parseAddress('unix://relative.sock', '--listen'), /must be absolute/);
  assert.throws(() => parseAddress('http://x:1', '--listen'), /unsupported scheme/);
  assert.throws(() => parseAddress('tcp://x:99999', '--listen'), /out of range/);
  assert.equal(formatAddress({ kind: 'tcp', host: '::1', port: 5 }), 'tcp://[::1]:5');
});

test('loopback and self-loop detection', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '10.0.0.1', '::', 'example.org']) assert.ok(!isLoopbackHost(h), h);
  const l = parseAddress('tcp://127.0.0.1:2377', 'x');
  assert.ok(pointsAt(parseAddress('tcp://localhost:2377', 'x'), l));
  assert.ok(pointsAt(parseAddress('tcp://10.1.2.3:2377', 'x'), parseAddress('tcp://0.0.0.0:2377', 'x')));
  assert.ok(!pointsAt(parseAddress('tcp://localhost:2375', 'x'), l));
  assert.ok(!pointsAt(parseAddress('unix:///var/run/docker.sock', 'x'), l));
  assert.ok(pointsAt(parseAddress('unix:///run/a.sock', 'x'), parseAddress('unix:///run//a.sock', 'x')));
});

test('listen policy: non-loopback TCP needs TLS with verified client certificates; --tlsverify needs a CA', () => {
  assert.throws(() => checkListenPolicy(parseAddress('tcp://0.0.0.0:2377', 'x')), /--tlsverify --tlscacert=ca.pem --tlscert=server-cert.pem --tlskey=server-key.pem/);
  checkListenPolicy(parseAddress('tcp://127.0.0.1:2377', 'x'));
  checkListenPolicy(parseAddress('unix:///run/calico.sock', 'x'));
  checkListenPolicy(parseAddress('tcp://0.0.0.0:2377', 'x'), { cert: 'c', key: 'k', ca: 'ca', verify: true });
  assert.throws(() => checkListenPolicy(parseAddress('tcp://0.0.0.0:2377', 'x'), { cert: 'c', key: 'k', verify: true }), /needs --tlscacert/);
  // --tls alone encrypts but accepts any client: refused off loopback, naming the fix.
  assert.throws(
    () => checkListenPolicy(parseAddress('tcp://10.0.0.10:2376', 'x'), { cert: 'c', key: 'k', ca: 'ca', verify: false }),
    /refusing to listen on tcp:\/\/10\.0\.0\.10:2376 with --tls alone.*Use --tlsverify instead of --tls/,
  );
  assert.throws(() => checkListenPolicy(parseAddress('tcp://[::]:2376', 'x'), { cert: 'c', key: 'k', verify: false }), /with --tls alone/);
  // On loopback (or a unix socket) --tls alone stays allowed.
  checkListenPolicy(parseAddress('tcp://127.0.0.1:2376', 'x'), { cert: 'c', key: 'k', verify: false });
  checkListenPolicy(parseAddress('tcp://[::1]:2376', 'x'), { cert: 'c', key: 'k', verify: false });
});

test('calicoctl node flags: defaults, refusals, and the DOCKER_HOST hint', () => {
  assert.equal(DEFAULT_LISTEN, 'tcp://127.0.0.1:2377');
  assert.equal(DEFAULT_DOCKER_UPSTREAM, 'unix:///var/run/docker.sock');
  const o = proxyOptionsFrom({ listen: DEFAULT_LISTEN, dockerUpstream: DEFAULT_DOCKER_UPSTREAM });
  assert.deepEqual(o, { listen: 'tcp://127.0.0.1:2377', upstream: 'unix:///var/run/docker.sock', tls: undefined });
  assert.equal(
    dockerHostHint(o),
    'Docker Remote API is on port 2377. Run\n\nexport DOCKER_HOST=localhost:2377\n\nbefore using `docker run` for Calico networking.\n',
  );
  assert.match(dockerHostHint(proxyOptionsFrom({ listen: 'unix:///run/c.sock', dockerUpstream: DEFAULT_DOCKER_UPSTREAM })), /export DOCKER_HOST=unix:\/\/\/run\/c.sock/);
  assert.throws(() => proxyOptionsFrom({ listen: 'tcp://0.0.0.0:2377', dockerUpstream: DEFAULT_DOCKER_UPSTREAM }), (e) => e instanceof CliError && /--tlsverify/.test(e.message));
  assert.throws(() => proxyOptionsFrom({ listen: DEFAULT_LISTEN, dockerUpstream: DEFAULT_DOCKER_UPSTREAM, tlsverify: true }), /needs --tlscert and --tlskey/);
  assert.throws(() => proxyOptionsFrom({ listen: DEFAULT_LISTEN, dockerUpstream: DEFAULT_DOCKER_UPSTREAM, tlscert: 'c', tlskey: 'k' }), /without --tls/);
  assert.throws(
    () => proxyOptionsFrom({ listen: 'tcp://0.0.0.0:2376', dockerUpstream: DEFAULT_DOCKER_UPSTREAM, tls: true, tlscert: 'c', tlskey: 'k' }),
    (e) => e instanceof CliError && /with --tls alone.*--tlsverify/.test(e.message),
  );
  assert.equal(proxyOptionsFrom({ listen: DEFAULT_LISTEN, dockerUpstream: DEFAULT_DOCKER_UPSTREAM, tls: true, tlscert: 'c', tlskey: 'k' }).tls?.verify, false);
  const t = proxyOptionsFrom({ listen: 'tcp://0.0.0.0:2376', dockerUpstream: DEFAULT_DOCKER_UPSTREAM, tlsverify: true, tlscacert: 'ca', tlscert: 'c', tlskey: 'k' });
  assert.deepEqual(t.tls, { cert: 'c', key: 'k', ca: 'ca', verify: true });
  assert.match(dockerHostHint(t), /DOCKER_TLS_VERIFY=1/);
  // --allow-origin, repeatable: origins only.
  const w = proxyOptionsFrom({ listen: DEFAULT_LISTEN, dockerUpstream: DEFAULT_DOCKER_UPSTREAM, allowOrigin: ['http://localhost:9000/', 'https://ui.example:8443'] });
  assert.deepEqual(w.allowOrigins, ['http://localhost:9000', 'https://ui.example:8443']);
  assert.throws(() => proxyOptionsFrom({ listen: DEFAULT_LISTEN, dockerUpstream: DEFAULT_DOCKER_UPSTREAM, allowOrigin: ['localhost:9000'] }), (e) => e instanceof CliError && /--allow-origin "localhost:9000" is not an origin/.test(e.message));
});

test('headers: hop-by-hop dropped, repeats and case kept', () => {
  const raw = [
    'Host', 'docker', 'Connection', 'keep-alive, X-Drop', 'X-Drop', '1', 'Transfer-Encoding', 'chunked',
    'X-Docker-Expose-Session-Grpc-Method', '/a', 'X-Docker-Expose-Session-Grpc-Method', '/b', 'Expect', '100-continue',
    'Content-Length', '3',
  ];
  assert.deepEqual(endToEndHeaders(raw), ['Host', 'docker', 'X-Docker-Expose-Session-Grpc-Method', '/a', 'X-Docker-Expose-Session-Grpc-Method', '/b', 'Content-Length', '3']);
  assert.deepEqual(endToEndHeaders(raw, ['content-length']).slice(-2), ['X-Docker-Expose-Session-Grpc-Method', '/b']);
  assert.deepEqual(headerObject(['A', '1', 'a', '2', 'B', '3']), { a: ['1', '2'], b: '3' });
});

test('interceptor helpers: Docker error shape', () => {
  assert.deepEqual(JSON.parse(dockerErrorBody('no such pool').toString()), { message: 'no such pool' });
  const e = dockerError(409, 'taken');
  assert.equal(e.status, 409);
  assert.equal(e.headers?.['Content-Type'], 'application/json');
});

test('hijack: the declared body gathered before the first write to dockerd', () => {
  const first = (headers: string) => {
    const raw = Buffer.from(`POST /containers/x/attach HTTP/1.1\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n${headers}\r\n`);
    const h = parseRequestHeadStrict(raw, raw.length) as Head;
    return firstWrite(h) - h.size;
  };
  assert.equal(first('Content-Length: 28\r\n'), 28);
  assert.equal(first(''), 0);
  assert.equal(first('Content-Length: 0\r\n'), 0);
  // Chunked (dockerode with no body) has no length to wait for; nonsense neither.
  assert.equal(first('Transfer-Encoding: chunked\r\nContent-Length: 28\r\n'), 0);
  assert.equal(first('Content-Length: x\r\n'), 0);
  // Beyond the cap it streams as it comes instead of being held.
  assert.equal(first(`Content-Length: ${MAX_GATHERED_BODY + 1}\r\n`), 0);
});

test('swarm port: dockerd\'s bind error on the proxy\'s own port is explained, others pass untouched', async () => {
  const clash = 'manager stopped: failed to listen on remote API address: listen tcp 0.0.0.0:2377: bind: address already in use';
  assert.deepEqual(addressInUse(clash), { host: '0.0.0.0', port: 2377 });
  assert.deepEqual(addressInUse('listen tcp [::]:2377: bind: address already in use'), { host: '::', port: 2377 });
  assert.equal(addressInUse('invalid join token'), undefined);
  const own = { host: '127.0.0.1', port: 2377 };
  assert.equal(collides({ host: '0.0.0.0', port: 2377 }, own), true);
  assert.equal(collides({ host: '127.0.0.1', port: 2377 }, own), true);
  assert.equal(collides({ host: '10.0.0.5', port: 2377 }, own), false, 'another address on the same port does not clash with a loopback listener');
  assert.equal(collides({ host: '10.0.0.5', port: 2377 }, { host: '0.0.0.0', port: 2377 }), true);
  assert.equal(collides({ host: '0.0.0.0', port: 2378 }, own), false);

  let listener: { host: string; port: number; label: string } | undefined = { ...own, label: 'tcp://127.0.0.1:2377' };
  const icp = swarmPortInterceptor(() => listener);
  assert.equal(icp.matches('POST', '/swarm/init'), true);
  assert.equal(icp.matches('POST', '/swarm/join'), true);
  assert.equal(icp.matches('GET', '/swarm'), false);
  const ctx = (path: string) => ({ method: 'POST', path, query: new URLSearchParams(), headers: {}, log: silentLogger() });
  const answer = (status: number, message: string) => ({ status, headers: {}, body: dockerErrorBody(message) });
  const join = await icp.onResponse!(ctx('/swarm/join'), answer(500, clash), undefined);
  assert.ok(join);
  assert.equal(join.status, 500);
  const msg = JSON.parse(join.body.toString()).message as string;
  assert.ok(msg.startsWith(clash), msg);
  assert.match(msg, /calico-docker proxy \(Docker API on tcp:\/\/127\.0\.0\.1:2377\)/);
  assert.match(msg, /`docker swarm join --listen-addr <ip>:2378`/);
  assert.match(msg, /`calicoctl node --listen tcp:\/\/127\.0\.0\.1:<port>`/);
  // Not ours: another port, another error, success, dockerd unreachable, a unix listener.
  assert.equal(await icp.onResponse!(ctx('/swarm/init'), answer(500, clash.replace('2377', '4000')), undefined), undefined);
  assert.equal(await icp.onResponse!(ctx('/swarm/init'), answer(503, 'This node is already part of a swarm.'), undefined), undefined);
  assert.equal(await icp.onResponse!(ctx('/swarm/init'), { status: 200, headers: {}, body: Buffer.from('"nodeid"') }, undefined), undefined);
  assert.equal(await icp.onResponse!(ctx('/swarm/init'), { error: new Error('ECONNREFUSED') }, undefined), undefined);
  listener = undefined;
  assert.equal(await icp.onResponse!(ctx('/swarm/init'), answer(500, clash), undefined), undefined);
});

test('framing: heads end at a blank line (CRLF or bare LF); bodies counted or chunk-scanned, not decoded', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  assert.equal(headEnd(b('GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY')), 27);
  assert.equal(headEnd(b('POST /x HTTP/1.1\nHost: docker.sock\n\n{}')), 36);
  assert.equal(headEnd(b('GET / HTTP/1.1\r\nHost: x\r\n')), -1);
  assert.equal(headEnd(b('GET / HTTP/1.1\r\nHost: x\r\n\r')), -1);
  const req = b('POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 12\r\n\r\n');
  const h = parseRequestHeadStrict(req, headEnd(req)) as Head;
  assert.deepEqual(h.line, ['POST', '/v1.41/containers/create', 'HTTP/1.1']);
  assert.deepEqual(h.rawHeaders, ['Host', 'x', 'X-A', '1', 'x-a', '2', 'Content-Length', '12']);
  assert.deepEqual(requestFramingStrict(h), { kind: 'length', n: 12 });
  assert.equal(parseAnswerHead(b('NOT HTTP\r\n\r\n'), 12), undefined);
  assert.equal(scanAnswerHead(b('NOT HTTP\r\n\r\n'), 12, 'GET'), undefined);
  const res = (s: string, method = 'GET') => {
    const r = b(s);
    return scanAnswerHead(r, headEnd(r), method)?.framing;
  };
  assert.deepEqual(res('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n', 'HEAD'), { kind: 'none' });
  assert.deepEqual(res('HTTP/1.1 204 No Content\r\n\r\n'), { kind: 'none' });
  assert.deepEqual(res('HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n'), { kind: 'close' });
  assert.deepEqual(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), { kind: 'chunked' });
  // Only framing headers are read, as parseAnswerHead reads them (names trimmed, any case, the first of each); what it refuses, refused.
  const scan = (s: string) => scanAnswerHead(b(s + '\r\n'), s.length + 2, 'GET');
  assert.deepEqual(scan('HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\n content-LENGTH : 7\r\nContent-Length: 9\r\nConnection: Close\r\n'), {
    status: 200,
    framing: { kind: 'length', n: 7 },
    close: true,
  });
  assert.deepEqual(scan('HTTP/1.0 200 OK\nContent-Length: 0\n'), { status: 200, framing: { kind: 'none' }, close: true });
  assert.equal(scan('HTTP/1.0 101 Switching\r\nConnection: keep-alive, Upgrade\r\n')?.close, false);
  assert.equal(scan('HTTP/1.1 200 OK\r\nno colon here\r\n'), undefined);
  assert.equal(scan('HTTP/1.1 200 OK\r\n: empty name\r\n'), undefined);

  // A chunked body split anywhere (sizes with extensions, a trailer) ends exactly where it ends.
  const body = b('5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n');
  for (let cut = 1; cut < body.length; cut++) {
    const sc = new BodyScanner({ kind: 'chunked' });
    const n1 = sc.feed(body.subarray(0, cut));
    assert.equal(n1, cut);
    assert.equal(sc.done, false, `done too early at ${cut}`);
    const n2 = sc.feed(Buffer.concat([body.subarray(cut), b('GET / HTTP/1.1\r\n')]));
    assert.equal(sc.done, true);
    assert.equal(n1 + n2, body.length, `cut at ${cut}`);
  }
  const len = new BodyScanner({ kind: 'length', n: 4 });
  assert.deepEqual([len.feed(b('ab')), len.done, len.feed(b('cdNEXT')), len.done], [2, false, 2, true]);
  const broken = new BodyScanner({ kind: 'chunked' });
  broken.feed(b('zz\r\n'));
  assert.deepEqual([broken.done, broken.broken], [true, true]);
});

test('what Go\'s server refuses before routing is refused here in Docker\'s shape', () => {
  const decide = (headers: string) => {
    const raw = Buffer.from(`POST /containers/create HTTP/1.1\r\n${headers}\r\n`, 'latin1');
    const d = decideRequest(raw, raw.length);
    return d.action === 'refuse' ? { status: d.status, message: d.message } : undefined;
  };
  assert.equal(decide('Host: x\r\nExpect: 100-continue\r\nX-Tab: a\tb\r\nX-Obs: caf\xe9\r\n'), undefined);
  assert.equal(decide('Host: x\r\nContent-Type: \x01\r\n')?.status, 400);
  assert.equal(decide('Host: x\r\nX-A: a\x7f\r\n')?.status, 400);
  // Go's readRequest wants a Host on HTTP/1.1 before it looks at Expect (server.go).
  assert.deepEqual(decide('Expect: nonsense\r\n'), { status: 400, message: 'calico proxy: missing required Host header' });
  assert.deepEqual(decide('Host: x\r\nExpect: nonsense\r\n'), { status: 417, message: 'calico proxy: unsupported Expect header "nonsense": only 100-continue is understood' });
});
