// etcd over TLS with client certificates: a three-member cluster that
// requires them (clients and peers), and calicoctl reaching it with the
// flags or Calico's environment variables, or failing with an error that
// names what to fix: the file, the CA, the missing client certificate.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { teardownAll, waitFor, EtcdCluster, run, runOk, CALICOCTL_MAIN, calicoctlTlsFlags, etcdctlTlsEnv, makeRunDir, onTeardown, removeTree } from '../harness';
import { Datastore, DatastoreError } from '../../src/datastore';
import { loadEtcdTls } from '../../src/etcd/tls';

after(teardownAll);

let etcd: EtcdCluster;
let endpoints: string;
before(async () => {
  etcd = await EtcdCluster.start({ size: 3, tls: true });
  endpoints = etcd.endpoints.join(',');
});

function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  for (const k of ['ETCD_ENDPOINTS', 'ETCD_AUTHORITY', 'ETCD_CA_CERT_FILE', 'ETCD_CERT_FILE', 'ETCD_KEY_FILE']) if (!(k in extra)) delete env[k];
  return env;
}

function calicoctl(args: string[], env: NodeJS.ProcessEnv = {}) {
  return run(process.execPath, [CALICOCTL_MAIN, ...args], { env: cleanEnv(env), timeoutMs: 30000 });
}

test('etcd TLS: the cluster refuses a client without a certificate (etcdctl), and takes one with it', async () => {
  const c = etcd.certs!;
  await runOk('etcdctl', ['--endpoints', endpoints, 'put', '/calico/tls-probe', 'ok'], { env: { ...process.env, ...etcdctlTlsEnv(c) }, timeoutMs: 20000 });
  const anon = await run('etcdctl', ['--endpoints', endpoints, '--cacert', c.ca, '--dial-timeout', '2s', '--command-timeout', '3s', 'get', '/calico/tls-probe'], {
    env: { ...process.env, ETCDCTL_API: '3' },
    timeoutMs: 20000,
  });
  assert.notEqual(anon.code, 0, anon.stdout);
  assert.doesNotMatch(anon.stdout, /ok/);
});

test('etcd TLS: calicoctl reaches the cluster with --etcd-ca-file/--etcd-cert-file/--etcd-key-file, or with ETCD_CA_CERT_FILE/ETCD_CERT_FILE/ETCD_KEY_FILE', async () => {
  const c = etcd.certs!;
  const add = await calicoctl(['pool', 'add', '10.77.0.0/16', '--etcd-endpoints', endpoints, ...calicoctlTlsFlags(c)]);
  assert.equal(add.code, 0, add.stderr);
  const show = await calicoctl(['pool', 'show', '--output', 'json'], {
    ETCD_ENDPOINTS: endpoints,
    ETCD_CA_CERT_FILE: c.ca,
    ETCD_CERT_FILE: c.clientCert,
    ETCD_KEY_FILE: c.clientKey,
  });
  assert.equal(show.code, 0, show.stderr);
  assert.deepEqual((JSON.parse(show.stdout) as { cidr: string }[]).map((p) => p.cidr), ['10.77.0.0/16']);
  // The flags go before the subcommand too, and win over the environment.
  const flagsFirst = await calicoctl([...calicoctlTlsFlags(c), '--etcd-endpoints', endpoints, 'pool', 'show', '--output', 'json'], { ETCD_CA_CERT_FILE: c.otherCa });
  assert.equal(flagsFirst.code, 0, flagsFirst.stderr);
});

test('etcd TLS: no client certificate -> refused, saying the server wants one; quickly, not after a long timeout', async () => {
  const t0 = Date.now();
  const r = await calicoctl(['pool', 'show', '--etcd-endpoints', endpoints, '--etcd-ca-file', etcd.certs!.ca]);
  const ms = Date.now() - t0;
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /^Error accessing etcd at https:\/\/127\.0\.0\.1:\d+.*: listing \/calico\/v1\/ipam\/v4\/pool\/: the etcd server refused the TLS handshake \(alert "[a-z ]*certificate[a-z ]*"\): it wants a client certificate signed by a CA it trusts; this client sent no client certificate/);
  assert.doesNotMatch(r.stderr, /Is etcd running\?/, JSON.stringify(r.stderr));
  assert.ok(ms < 10000, `took ${ms} ms`);
});

test('etcd TLS: a server certificate that does not verify against the CA given -> an error naming the verification and the CA file', async () => {
  const c = etcd.certs!;
  const r = await calicoctl(['pool', 'show', '--etcd-endpoints', endpoints, '--etcd-ca-file', c.otherCa, '--etcd-cert-file', c.clientCert, '--etcd-key-file', c.clientKey]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, new RegExp(`the etcd server's certificate did not verify against --etcd-ca-file ${c.otherCa}: .*(verify|certificate)`));
  // No CA at all: the system's CAs do not know this test CA either.
  const sys = await calicoctl(['pool', 'show', '--etcd-endpoints', endpoints]);
  assert.equal(sys.code, 1);
  assert.match(sys.stderr, /the etcd server's certificate did not verify against the system's CA certificates/);
});

test('etcd TLS: a missing key file, or TLS files with http:// endpoints -> an error naming the file or the endpoints, before any connection', async () => {
  const c = etcd.certs!;
  const missing = path.join(etcd.dir, 'certs', 'no-such-key.pem');
  const r = await calicoctl(['pool', 'show', '--etcd-endpoints', endpoints, '--etcd-ca-file', c.ca, '--etcd-cert-file', c.clientCert], { ETCD_KEY_FILE: missing });
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), `cannot read the etcd client key file ${missing} (ETCD_KEY_FILE): no such file`);
  const half = await calicoctl(['pool', 'show', '--etcd-endpoints', endpoints, '--etcd-cert-file', c.clientCert]);
  assert.match(half.stderr, /--etcd-cert-file .* is given without its key/);
  const plain = await calicoctl(['pool', 'show', '--etcd-endpoints', 'http://127.0.0.1:2379', ...calicoctlTlsFlags(c)]);
  assert.equal(plain.code, 1);
  assert.match(plain.stderr, /--etcd-ca-file, --etcd-cert-file, --etcd-key-file given, but etcd is reached at http:\/\/127\.0\.0\.1:2379 \(--etcd-endpoints\): the TLS files are for https:\/\/ endpoints/);
});

test('etcd TLS: the datastore client (what the node uses) survives a member down, over TLS', async () => {
  const c = etcd.certs!;
  const tls = loadEtcdTls({ ca: { path: c.ca, from: 'test' }, cert: { path: c.clientCert, from: 'test' }, key: { path: c.clientKey, from: 'test' } });
  const ds = new Datastore({ endpoints: etcd.endpoints, tls });
  try {
    await ds.put('/calico/tls-test', { ok: 1 });
    await etcd.kill(0);
    // The next call may meet the election (member 0 may have led): the node retries the same way.
    await waitFor('a write with member 0 down', () => ds.put('/calico/tls-test', { ok: 2 }).then(() => true, () => false), 20000, 200);
    assert.deepEqual(await ds.listKeys('/calico/tls-test'), ['/calico/tls-test']);
  } finally {
    ds.close();
    await etcd.restart(0);
  }
  const wrong = new Datastore({ endpoints: etcd.endpoints, tls: { ...tls, ca: fs.readFileSync(c.otherCa), caFrom: 'the other CA' } });
  try {
    await assert.rejects(wrong.ping(), (e: unknown) => e instanceof DatastoreError && e.code === 'TLS' && /did not verify against the other CA/.test(e.message));
    assert.match(wrong.health() ?? '', /did not verify/);
  } finally {
    wrong.close();
  }
});

test('etcd TLS: calicoctl node with a CA that does not verify the server fails at once, naming the verification (no 20 s wait)', async () => {
  const c = etcd.certs!;
  const dir = await makeRunDir('tls-node');
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  const t0 = Date.now();
  // Fails in its first component (the datastore): nothing of the host is touched.
  const r = await calicoctl([
    'node', '--state-dir', path.join(dir, 'state'), '--listen', `unix://${path.join(dir, 'proxy.sock')}`, '--plugin-name', `tls${process.pid}`,
    '--docker', `unix://${path.join(dir, 'no-docker.sock')}`, '--ip', '127.0.0.1',
    '--etcd-endpoints', endpoints, '--etcd-ca-file', c.otherCa, '--etcd-cert-file', c.clientCert, '--etcd-key-file', c.clientKey,
  ]);
  const ms = Date.now() - t0;
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, new RegExp(`calicoctl node failed to start: checking etcd: the etcd server's certificate did not verify against --etcd-ca-file ${c.otherCa}`));
  assert.ok(ms < 15000, `took ${ms} ms`);
  const missing = await calicoctl(['node', '--state-dir', path.join(dir, 'state'), '--etcd-endpoints', endpoints, '--etcd-ca-file', path.join(dir, 'nope.pem')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, new RegExp(`cannot read the etcd CA certificate file ${dir}/nope.pem \\(--etcd-ca-file\\): no such file`));
});
