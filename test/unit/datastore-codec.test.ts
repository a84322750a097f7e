import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Datastore, DatastoreError, json, normaliseEndpoint, prefixEnd, text } from '../../src/datastore';
import { AsNumberValue, PoolValue } from '../../src/datastore/schemas';

test('endpoints are normalised to URLs; an empty list is refused', () => {
  assert.equal(normaliseEndpoint('127.0.0.1:2379'), 'http://127.0.0.1:2379');
  assert.equal(normaliseEndpoint(' https://etcd.example:2379/ '), 'https://etcd.example:2379');
  assert.throws(() => new Datastore({ endpoints: [] }), /no etcd endpoints/);
});

test('prefix range end: the next key after every key with the prefix', () => {
  assert.equal(prefixEnd('/calico/').toString(), '/calico0');
  assert.equal(prefixEnd('ab').toString(), 'ac');
});

test('decoding names the key and says what is wrong; no I/O needed', () => {
  const ds = new Datastore({ endpoints: ['127.0.0.1:1'] });
  try {
    assert.deepEqual(ds.decode('/k', '{"cidr":"10.0.0.0/8"}', json(PoolValue)), { cidr: '10.0.0.0/8' });
    assert.equal(ds.decode('/as', '64511', text(AsNumberValue)), '64511');
    const bad = (raw: string, re: RegExp): void =>
      assert.throws(
        () => ds.decode('/calico/v1/ipam/v4/pool/x', raw, json(PoolValue)),
        (e: unknown) => e instanceof DatastoreError && e.code === 'INVALID_VALUE' && e.key === '/calico/v1/ipam/v4/pool/x' && re.test(e.message),
      );
    bad('{not json', /not JSON/);
    bad('{"cidr": "banana"}', /cidr: expected a CIDR/);
    bad('[]', /Expected object/);
    assert.throws(() => ds.decode('/as', 'ten', text(AsNumberValue)), /invalid value at \/as/);
  } finally {
    ds.close();
  }
});
