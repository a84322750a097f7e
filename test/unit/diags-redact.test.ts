import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isSecretName, redactJson, redactKv, redactText } from '../../src/diags/redact';
import { archiveName } from '../../src/diags/collect';

test('secret names: TLS material, passwords, tokens; never our ordinary keys or hex ids', () => {
  for (const n of ['EtcdKeyFile', 'etcd_key', 'key_file', 'tls_key', 'EtcdCertFile', 'EtcdCaFile', 'ca_file', 'etcd-ca', 'password', 'ETCD_PASSWORD', 'api_key', 'token', 'Authorization', 'private_key']) {
    assert.ok(isSecretName(n), n);
  }
  for (const n of ['bird_ip', 'bird6_ip', 'bgp_as', 'InterfacePrefix', 'Ready', 'marker', '172.16.0.1', 'fd00::ca', '0123456789abcdef01ca', 'resv-1b2c-4f1e0c', 'profile_ids', 'ipv4_nets', 'tags', 'rules', 'bgp_peer_v4']) {
    assert.ok(!isSecretName(n), n);
  }
});

test('text: PEM blocks, URL credentials and name=value secrets go; the rest stays', () => {
  assert.equal(redactText('a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nb'), 'a\n[redacted] (PEM block)\nb');
  assert.equal(redactText('etcd: http://user:pw@10.0.0.1:2379 up'), 'etcd: http://[redacted]@10.0.0.1:2379 up');
  assert.equal(redactText('ETCD_PASSWORD=abc --etcd-key-file /k.pem password: "x y" ok'), 'ETCD_PASSWORD=[redacted] --etcd-key-file [redacted] password: [redacted] ok');
  assert.equal(redactText('default via 10.0.0.1 dev eth0 proto static'), 'default via 10.0.0.1 dev eth0 proto static');
});

test('etcd key/values: a secret key keeps its name only; JSON fields redacted at any depth; plain values as text', () => {
  assert.deepEqual(redactKv('/calico/v1/config/EtcdKeyFile', '/etc/k.pem'), { key: '/calico/v1/config/EtcdKeyFile', value: '[redacted]' });
  assert.deepEqual(redactKv('/calico/v1/host/h/bird_ip', '10.0.0.1'), { key: '/calico/v1/host/h/bird_ip', value: '10.0.0.1' });
  assert.deepEqual(redactKv('/calico/v1/config/x', '{"a":{"password":"p","b":["http://u:p@h/"]},"n":1}'), {
    key: '/calico/v1/config/x',
    value: { a: { password: '[redacted]', b: ['http://[redacted]@h/'] }, n: 1 },
  });
  assert.deepEqual(redactJson({ tls: { cert: 'c' }, ok: true }), { tls: '[redacted]', ok: true });
});

test('archive name: diags-YYYYmmdd_HHMMSS.tar.gz', () => {
  assert.equal(archiveName(new Date(2026, 0, 2, 3, 4, 5)), 'diags-20260102_030405.tar.gz');
});

test('BGP passwords: the mesh and route reflector password keys, a peer\'s "password" field, and `password "..."` in bird.conf', () => {
  assert.deepEqual(redactKv('/calico/v1/config/bgp_node_mesh_password', 'm3sh pw'), { key: '/calico/v1/config/bgp_node_mesh_password', value: '[redacted]' });
  assert.deepEqual(redactKv('/calico/v1/config/bgp_rr_password_v4/172.16.0.1', 'rr-pw'), { key: '/calico/v1/config/bgp_rr_password_v4/172.16.0.1', value: '[redacted]' });
  assert.deepEqual(redactKv('/calico/v1/host/h/bgp_peer_v4/10.0.0.9', '{"ip":"10.0.0.9","as_num":65003,"password":"node pw"}'), {
    key: '/calico/v1/host/h/bgp_peer_v4/10.0.0.9',
    value: { ip: '10.0.0.9', as_num: 65003, password: '[redacted]' },
  });
  assert.deepEqual(redactKv('/calico/v1/config/bgp_peer_rr_v4/172.16.0.1', '172.16.0.1'), { key: '/calico/v1/config/bgp_peer_rr_v4/172.16.0.1', value: '172.16.0.1' });
  const conf = 'protocol bgp Mesh_10_0_0_2 from calico_v4 {\n  neighbor 10.0.0.2 as 64511;\n  password "s3cret with spaces;{}";\n}';
  const out = redactText(conf);
  assert.doesNotMatch(out, /s3cret/);
  assert.match(out, /^ {2}password \[redacted\];$/m);
  assert.match(out, /neighbor 10\.0\.0\.2 as 64511;/);
});
