import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveEndpoints, normaliseEndpoint, parseEndpointList, DEFAULT_ETCD_ENDPOINT } from '../../src/etcd/endpoints';

test('endpoints: the flag wins over ETCD_ENDPOINTS and ETCD_AUTHORITY', () => {
  const r = resolveEndpoints('http://10.0.0.1:2379,10.0.0.2', { ETCD_ENDPOINTS: 'http://e:1', ETCD_AUTHORITY: 'a:2' });
  assert.deepEqual(r, { endpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], source: '--etcd-endpoints' });
});

test('endpoints: ETCD_ENDPOINTS wins over ETCD_AUTHORITY; ETCD_AUTHORITY is the 2015 host:port form', () => {
  assert.deepEqual(resolveEndpoints(undefined, { ETCD_ENDPOINTS: 'https://e1:4001, http://e2:2379', ETCD_AUTHORITY: 'a:2' }), {
    endpoints: ['https://e1:4001', 'http://e2:2379'],
    source: 'ETCD_ENDPOINTS',
  });
  assert.deepEqual(resolveEndpoints(undefined, { ETCD_AUTHORITY: '192.0.2.7:4001' }), {
    endpoints: ['http://192.0.2.7:4001'],
    source: 'ETCD_AUTHORITY',
  });
});

test('endpoints: nothing configured (or empty variables) means 127.0.0.1:2379', () => {
  assert.deepEqual(resolveEndpoints(undefined, {}), { endpoints: [DEFAULT_ETCD_ENDPOINT], source: 'default' });
  assert.deepEqual(resolveEndpoints(undefined, { ETCD_ENDPOINTS: ' ', ETCD_AUTHORITY: '' }).source, 'default');
  assert.equal(DEFAULT_ETCD_ENDPOINT, 'http://127.0.0.1:2379');
});

test('endpoints: normalisation adds scheme and port, keeps IPv6 brackets, drops duplicates', () => {
  assert.equal(normaliseEndpoint('localhost', 'x'), 'http://localhost:2379');
  assert.equal(normaliseEndpoint('http://[::1]:2390/', 'x'), 'http://[::1]:2390');
  assert.equal(normaliseEndpoint('[::1]:2390', 'x'), 'http://[::1]:2390');
  assert.deepEqual(parseEndpointList('a:1,http://a:1,,b:2', 'x'), ['http://a:1', 'http://b:2']);
});

test('endpoints: bad values are refused naming where they came from', () => {
  assert.throws(() => resolveEndpoints('ftp://e:1', {}), /--etcd-endpoints: "ftp:\/\/e:1" uses ftp; etcd endpoints are http:\/\/, https:\/\/ or unix:\/\//);
  assert.throws(() => resolveEndpoints(',', {}), /--etcd-endpoints: no etcd endpoint given/);
  assert.throws(() => resolveEndpoints(undefined, { ETCD_AUTHORITY: 'a:1,b:2' }), /ETCD_AUTHORITY holds one host:port/);
  assert.throws(() => resolveEndpoints(undefined, { ETCD_ENDPOINTS: 'http://e:99999' }), /ETCD_ENDPOINTS: "http:\/\/e:99999" is not a valid etcd endpoint/);
  assert.throws(() => normaliseEndpoint('http://e:1/v2/keys', 'flag'), /flag: .* must not have a path/);
});

test('endpoints: unix:///absolute/path names a socket (the embedded member); relative paths are refused', () => {
  assert.deepEqual(resolveEndpoints('unix:///var/lib/calico/etcd.sock:2379', {}).endpoints, ['unix:///var/lib/calico/etcd.sock:2379']);
  assert.throws(() => resolveEndpoints('unix://etcd.sock:2379', {}), /must name an absolute socket path/);
});
