import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Datastore, DatastoreError, json, normaliseEndpoint, prefixEnd, text } from '../../src/datastore';
import { endpointCodec } from '../../src/datastore/endpoint-store';
import { AsNumberValue, EndpointValue, fastEndpointValue, PoolValue } from '../../src/datastore/schemas';

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

test("endpoint values' fast path gives what the schema gives, and never accepts what it rejects", () => {
  const base = {
    state: 'active',
    name: 'cali0123456789a',
    mac: 'ee:ee:ee:ee:ee:ee',
    'container:if_name': 'eth0',
    profile_ids: ['web', 'db.x:1_2-3'],
    ipv4_nets: ['10.0.0.1/32'],
    ipv6_nets: ['fd00::1/128'],
  };
  const variants: Record<string, unknown>[] = [
    base,
    { ...base, extra: 1 },
    { ...base, 'container:if_name': undefined },
    { ...base, ipv4_gateway: '10.0.0.254', ipv6_gateway: null },
    { ...base, ipv4_gateway: 'gw' },
    { ...base, ipv6_gateway: 7 },
    { ...base, state: 'inactive' },
    { ...base, state: 'up' },
    { ...base, name: '' },
    { ...base, name: 'cali0123456789ab' },
    { ...base, name: 5 },
    { ...base, mac: 'ee:ee:ee:ee:ee' },
    { ...base, mac: 'EE:ee:00:11:22:33' },
    { ...base, 'container:if_name': '' },
    { ...base, 'container:if_name': null },
    { ...base, profile_ids: [] },
    { ...base, profile_ids: ['a b'] },
    { ...base, profile_ids: 'web' },
    { ...base, profile_ids: [1] },
    { ...base, profile_id: 'x' },
    { ...Object.fromEntries(Object.entries(base).filter(([k]) => k !== 'profile_ids')), profile_id: 'legacy' },
    { ...base, ipv4_nets: [] },
    { ...base, ipv4_nets: ['10.0.0.0/8', '0.0.0.0/0', '255.255.255.255/32', '192.168.1.7/24'] },
    { ...base, ipv4_nets: ['10.0.0.1'] },
    { ...base, ipv4_nets: ['10.0.0.1/33'] },
    { ...base, ipv4_nets: ['256.0.0.1/32'] },
    { ...base, ipv4_nets: ['010.0.0.1/32'] },
    { ...base, ipv4_nets: ['10.0.0.1/032'] },
    { ...base, ipv4_nets: [' 10.0.0.1/32'] },
    { ...base, ipv4_nets: ['banana'] },
    { ...base, ipv4_nets: [null] },
    { ...base, ipv4_nets: '10.0.0.1/32' },
    { ...base, ipv6_nets: ['fd00::/129'] },
    { ...base, ipv6_nets: ['fd00::1/64', '::/0'] },
    { ...base, ipv6_nets: undefined },
  ];
  const raws: unknown[] = [...variants, null, [], 'x', 3, {}];
  let fastTaken = 0;
  for (const raw of raws) {
    const data = raw === undefined ? raw : JSON.parse(JSON.stringify(raw));
    const slow = EndpointValue.safeParse(data);
    const fast = fastEndpointValue(data);
    const what = JSON.stringify(raw);
    if (fast === undefined) continue;
    fastTaken++;
    assert.ok(slow.success, `fast path accepted what the schema rejects: ${what}`);
    assert.deepEqual(fast, slow.data, `fast path and schema differ on ${what}`);
  }
  // The common shapes do take the fast path (else this test would prove nothing).
  assert.ok(fastTaken >= 8, `fast path taken ${fastTaken} times`);
  assert.notEqual(fastEndpointValue(base), undefined);
  // And through the datastore's decoder: an invalid value is still refused with the schema's message.
  const ds = new Datastore({ endpoints: ['127.0.0.1:1'] });
  try {
    assert.deepEqual(ds.decode('/e', JSON.stringify(base), endpointCodec), EndpointValue.parse(base));
    assert.throws(
      () => ds.decode('/e', JSON.stringify({ ...base, ipv4_nets: ['10.0.0.1/33'] }), endpointCodec),
      (e: unknown) => e instanceof DatastoreError && e.code === 'INVALID_VALUE' && /invalid value at \/e: ipv4_nets\.0: expected a CIDR/.test(e.message),
    );
  } finally {
    ds.close();
  }
});
