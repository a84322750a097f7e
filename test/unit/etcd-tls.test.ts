import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkTlsEndpoints, loadEtcdTls, resolveEtcdTls, tlsFlagArgs } from '../../src/etcd/tls';
import { describeTlsFailure } from '../../src/datastore/datastore';
import { makeTestCerts } from '../harness/certs';

test('etcd TLS: each file from its flag, else Calico\'s environment variable; a certificate needs its key', () => {
  const env = { ETCD_CA_CERT_FILE: '/env/ca.pem', ETCD_CERT_FILE: '/env/c.pem', ETCD_KEY_FILE: '/env/k.pem' };
  assert.deepEqual(resolveEtcdTls({ etcdCaFile: '/flag/ca.pem' }, env), {
    ca: { path: '/flag/ca.pem', from: '--etcd-ca-file' },
    cert: { path: '/env/c.pem', from: 'ETCD_CERT_FILE' },
    key: { path: '/env/k.pem', from: 'ETCD_KEY_FILE' },
  });
  assert.deepEqual(resolveEtcdTls({}, { ETCD_CA_CERT_FILE: ' ' }), {});
  assert.throws(() => resolveEtcdTls({ etcdCertFile: '/c.pem' }, {}), /--etcd-cert-file \/c.pem is given without its key: add --etcd-key-file \(or ETCD_KEY_FILE\)/);
  assert.throws(() => resolveEtcdTls({}, { ETCD_KEY_FILE: '/k.pem' }), /ETCD_KEY_FILE \/k.pem is given without its certificate/);
  assert.deepEqual(tlsFlagArgs(resolveEtcdTls({ etcdCaFile: '/a' }, {})), ['--etcd-ca-file', '/a']);
});

test('etcd TLS: files need https:// endpoints (never plain text by mistake); a list is all https or none', () => {
  const files = { ca: { path: '/ca.pem', from: '--etcd-ca-file' } };
  assert.doesNotThrow(() => checkTlsEndpoints(['https://10.0.0.1:2379', 'https://10.0.0.2:2379'], files, '--etcd-endpoints'));
  assert.doesNotThrow(() => checkTlsEndpoints(['https://10.0.0.1:2379'], {}, '--etcd-endpoints'));
  assert.doesNotThrow(() => checkTlsEndpoints(['http://10.0.0.1:2379'], {}, '--etcd-endpoints'));
  assert.throws(() => checkTlsEndpoints(['http://127.0.0.1:2379'], files, 'default'), /--etcd-ca-file given, but etcd is reached at http:\/\/127.0.0.1:2379 \(default\): the TLS files are for https:\/\/ endpoints/);
  assert.throws(() => checkTlsEndpoints(['https://a:1', 'http://b:1'], undefined, 'ETCD_ENDPOINTS'), /ETCD_ENDPOINTS: mixes https:\/\/ and other endpoints/);
});

test('etcd TLS: a missing, unreadable or mismatched file is named with where it was given', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-tls-'));
  try {
    const c = makeTestCerts(dir);
    const ok = loadEtcdTls({ ca: { path: c.ca, from: '--etcd-ca-file' }, cert: { path: c.clientCert, from: '--etcd-cert-file' }, key: { path: c.clientKey, from: '--etcd-key-file' } });
    assert.ok(ok.ca && ok.cert && ok.key);
    assert.equal(ok.caFrom, `--etcd-ca-file ${c.ca}`);
    const missing = path.join(dir, 'nope.pem');
    assert.throws(
      () => loadEtcdTls({ ca: { path: c.ca, from: '--etcd-ca-file' }, cert: { path: c.clientCert, from: 'ETCD_CERT_FILE' }, key: { path: missing, from: 'ETCD_KEY_FILE' } }),
      new RegExp(`cannot read the etcd client key file ${missing} \\(ETCD_KEY_FILE\\): no such file`),
    );
    assert.throws(() => loadEtcdTls({ ca: { path: dir, from: '--etcd-ca-file' } }), /cannot read the etcd CA certificate file .* is a directory/);
    const junk = path.join(dir, 'junk.pem');
    fs.writeFileSync(junk, 'not a certificate\n');
    assert.throws(() => loadEtcdTls({ ca: { path: junk, from: '--etcd-ca-file' } }), new RegExp(`CA certificate file ${junk} \\(--etcd-ca-file\\) holds no`));
    assert.throws(
      () => loadEtcdTls({ cert: { path: c.clientCert, from: '--etcd-cert-file' }, key: { path: c.serverKey, from: '--etcd-key-file' } }),
      new RegExp(`the etcd client key ${c.serverKey} does not belong to the certificate ${c.clientCert}`),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('etcd TLS: gRPC\'s handshake failures read as what to fix, not as "etcd is down"', () => {
  const tls = { caFrom: '--etcd-ca-file /etc/calico/ca.pem' };
  // Verbatim from @grpc/grpc-js 1.14 against etcd 3.4 (see test/integration/etcd-tls.test.ts).
  const wrongCa = '14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ';
  assert.equal(describeTlsFailure(wrongCa, tls), "the etcd server's certificate did not verify against --etcd-ca-file /etc/calico/ca.pem: unable to verify the first certificate");
  const noCert = '14 UNAVAILABLE: No connection established. Last error: 809C0C21C87F0000:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 42\n (2026-12-07T15:10:31.384Z). Resolution note: ';
  assert.match(describeTlsFailure(noCert, tls)!, /^the etcd server refused the TLS handshake \(alert "bad certificate"\): it wants a client certificate signed by a CA it trusts; this client sent no client certificate/);
  assert.equal(describeTlsFailure('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1 (2026-12-07T15:10:31.384Z)', tls), undefined);
});
