// The syncer's pure model: key changes in, typed snapshots out. Decoding goes
// through a real Datastore's schemas (no etcd is contacted).
import { test, after } from 'node:test';
import { LayeredMap } from '../../src/syncer/layered-map';
import assert from 'node:assert/strict';
import type { IKeyValue } from 'etcd3/lib/rpc';
import { Datastore, defaultProfile, keys } from '../../src/datastore';
import { DecodeKv, KeyChange, kindOf, SyncState } from '../../src/syncer';

const invalid: string[] = [];
const ds = new Datastore({ endpoints: ['127.0.0.1:1'], onInvalid: (key) => invalid.push(key) });
after(() => ds.close());
const decode: DecodeKv = (kv, codec) => ds.decodeAll([kv], codec)[0]?.value;

let rev = 0;
function kv(key: string, value: unknown): IKeyValue {
  rev++;
  return {
    key: Buffer.from(key),
    value: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
    create_revision: String(rev),
    mod_revision: String(rev),
    version: '1',
    lease: '0',
  };
}
const put = (key: string, value: unknown): KeyChange => ({ key, kv: kv(key, value) });
const del = (key: string): KeyChange => ({ key });

const EP = { state: 'active', name: 'cali0123456789a', mac: 'ee:ee:ee:ee:ee:ee', profile_ids: ['web'], ipv4_nets: ['192.168.0.1/32'], ipv6_nets: [] };
const epKey = keys.endpoint('n1', 'c1', 'e1');

function base(): SyncState {
  return SyncState.fromKvs(
    decode,
    [
      kv(keys.pool(4, '10.0.0.0/8'), { cidr: '10.0.0.0/8', masquerade: true }),
      kv(keys.pool(6, 'fd00::/64'), { cidr: 'fd00:0::/64', ipip: 'tunl0' }),
      kv(keys.hostBirdIp('n1'), '172.17.0.2'),
      kv(keys.hostBird6Ip('n1'), ''),
      kv(keys.hostBgpAs('n2'), '65000'),
      kv(epKey, EP),
      kv(keys.profileTags('web'), ['web', 'frontend']),
      kv(keys.profileRules('db'), { inbound_rules: [], outbound_rules: [{ action: 'allow' }] }),
      kv(keys.bgpAs(), '64512'),
      kv(keys.hostConfigMarker('n1'), 'created'),
    ],
    '10',
  );
}

test('a full read becomes typed maps; untyped keys go to raw; half-written profiles get defaults', () => {
  const s = base().snapshot();
  assert.equal(s.revision, '10');
  assert.deepEqual([...s.pools.values()], [
    { cidr: '10.0.0.0/8', family: 4, natOutgoing: true, ipip: false },
    { cidr: 'fd00::/64', family: 6, natOutgoing: false, ipip: true, ipipMode: 'always' },
  ]);
  // n2 has only bgp_as: not registered (as HostStore.list).
  assert.deepEqual([...s.hosts.entries()], [['n1', { host: 'n1', ip: '172.17.0.2', ip6: undefined }]]);
  assert.deepEqual(s.endpoints.get(epKey), { host: 'n1', containerId: 'c1', endpointId: 'e1', ...EP, 'container:if_name': 'eth0' });
  assert.deepEqual(s.profiles.get('web'), { name: 'web', tags: ['web', 'frontend'], rules: defaultProfile('web').rules });
  assert.deepEqual(s.profiles.get('db'), { name: 'db', tags: ['db'], rules: { inbound_rules: [], outbound_rules: [{ action: 'allow' }] } });
  assert.deepEqual([...s.raw.entries()], [
    [keys.bgpAs(), '64512'],
    [keys.hostConfigMarker('n1'), 'created'],
  ]);
  assert.ok(Object.isFrozen(s));
});

test('a batch changes only what it names, reports kinds and keys once each, and leaves earlier snapshots untouched', () => {
  const st = base();
  const before = st.snapshot();
  const ep2 = keys.endpoint('n1', 'c2', 'e1');
  const r = st.apply(
    [
      put(ep2, { ...EP, name: 'cali2' }),
      put(ep2, { ...EP, name: 'cali3' }),
      del(epKey),
      put(keys.hostBgpAs('n1'), '65001'),
      del(keys.profileTags('web')),
      put(keys.bgpPeerRr(4, '10.0.0.9'), '10.0.0.9'),
    ],
    '16',
  );
  assert.deepEqual([...r.changed].sort(), ['config', 'endpoints', 'hosts', 'profiles']);
  assert.deepEqual(r.keys, [ep2, epKey, keys.hostBgpAs('n1'), keys.profileTags('web'), keys.bgpPeerRr(4, '10.0.0.9')]);
  const s = st.snapshot();
  assert.equal(s.revision, '16');
  assert.deepEqual([...s.endpoints.keys()], [ep2]);
  assert.equal(s.endpoints.get(ep2)!.name, 'cali3');
  assert.equal(s.hosts.get('n1')!.as, '65001');
  assert.equal(s.profiles.has('web'), false);
  assert.equal(s.raw.get(keys.bgpPeerRr(4, '10.0.0.9')), '10.0.0.9');
  // Untouched maps are shared; touched ones are new; the old snapshot is as it was.
  assert.equal(s.pools, before.pools);
  assert.notEqual(s.endpoints, before.endpoints);
  assert.deepEqual([...before.endpoints.keys()], [epKey]);
  assert.equal(before.hosts.get('n1')!.as, undefined);
  assert.equal(before.profiles.has('web'), true);
  assert.equal(before.revision, '10');
});

test('an invalid value is reported with its key and removes the typed entry; other keys still apply', () => {
  invalid.length = 0;
  const st = base();
  st.apply([put(epKey, { ...EP, mac: 'nope' }), put(keys.pool(4, '10.0.0.0/8'), '{not json'), put(keys.hostBirdIp('n3'), '10.9.9.9')], '13');
  assert.deepEqual(invalid, [epKey, keys.pool(4, '10.0.0.0/8')]);
  const s = st.snapshot();
  assert.equal(s.endpoints.size, 0);
  assert.deepEqual([...s.pools.keys()], ['fd00::/64']);
  assert.equal(s.hosts.get('n3')!.ip, '10.9.9.9');
  assert.equal(s.raw.has(epKey), false);
});

test('host leaves and profile halves assemble across batches; deleting the last part removes the object', () => {
  const st = base();
  st.apply([put(keys.hostBirdIp('n2'), '10.0.0.2')], '11');
  assert.deepEqual(st.snapshot().hosts.get('n2'), { host: 'n2', ip: '10.0.0.2', as: '65000' });
  st.apply([del(keys.hostBirdIp('n2'))], '12');
  assert.equal(st.snapshot().hosts.has('n2'), false);
  st.apply([put(keys.hostBirdIp('n2'), '10.0.0.3')], '13');
  assert.deepEqual(st.snapshot().hosts.get('n2'), { host: 'n2', ip: '10.0.0.3', as: '65000' });
  st.apply([put(keys.profileRules('web'), { inbound_rules: [], outbound_rules: [] })], '14');
  assert.deepEqual(st.snapshot().profiles.get('web'), { name: 'web', tags: ['web', 'frontend'], rules: { inbound_rules: [], outbound_rules: [] } });
  st.apply([del(keys.profileTags('web')), del(keys.profileRules('web'))], '15');
  assert.equal(st.snapshot().profiles.has('web'), false);
});

test('a pool is published under its canonical CIDR and leaves with its key', () => {
  const st = base();
  assert.ok(st.snapshot().pools.has('fd00::/64'));
  st.apply([put(keys.pool(6, 'fd00::/64'), { cidr: 'fd00::/64' })], '11');
  assert.equal(st.snapshot().pools.get('fd00::/64')!.ipip, false);
  st.apply([del(keys.pool(6, 'fd00::/64'))], '12');
  assert.deepEqual([...st.snapshot().pools.keys()], ['10.0.0.0/8']);
});

test('kinds by key: endpoints, hosts (incl. per-host BGP peers), profiles, pools, config (incl. Ready)', () => {
  assert.equal(kindOf(epKey), 'endpoints');
  assert.equal(kindOf('/calico/v1/host/n1/bgp_peer_v4/10.0.0.1'), 'hosts');
  assert.equal(kindOf(keys.profileRules('p')), 'profiles');
  assert.equal(kindOf(keys.pool(4, '10.0.0.0/8')), 'pools');
  assert.equal(kindOf(keys.bgpNodeMesh()), 'config');
  assert.equal(kindOf(keys.ready()), 'config');
});

test('1000 endpoints: one update copies no map (the new version layers the change on the old) and stays cheap', (t) => {
  const kvs: IKeyValue[] = [];
  for (let i = 0; i < 1000; i++) kvs.push(kv(keys.endpoint('n1', `c${i}`, 'e1'), { ...EP, name: `cali${i}` }));
  const t0 = process.hrtime.bigint();
  const st = SyncState.fromKvs(decode, kvs, '2000');
  const t1 = process.hrtime.bigint();
  const before = st.snapshot();
  st.apply([put(keys.endpoint('n1', 'c5', 'e1'), { ...EP, name: 'caliX' })], '2001');
  const t2 = process.hrtime.bigint();
  assert.equal(st.snapshot().endpoints.size, 1000);
  assert.equal(st.snapshot().endpoints.get(keys.endpoint('n1', 'c5', 'e1'))!.name, 'caliX');
  assert.equal(before.endpoints.get(keys.endpoint('n1', 'c5', 'e1'))!.name, 'cali5');
  assert.equal((st.snapshot().endpoints as LayeredMap<string, unknown>).layerSize(), 1);
  assert.equal(before.endpoints.size, 1000);
  t.diagnostic(`decode+build 1000 endpoints: ${Number(t1 - t0) / 1e6} ms; one update: ${Number(t2 - t1) / 1e6} ms`);
});
