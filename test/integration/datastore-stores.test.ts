// The datastore layer against a real etcd member: pools (normalising,
// idempotent add, refusals with clear messages, usage, guarded removal),
// endpoints, hosts, BGP config, profiles, invalid stored values, and an
// unreachable etcd failing fast with the endpoints named.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { EtcdCluster, freePort, onTeardown, teardownAll } from '../harness';
import {
  BgpConfigStore,
  Datastore,
  DatastoreError,
  DEFAULT_POOLS,
  Endpoint,
  EndpointStore,
  HostStore,
  PoolStore,
  ProfileStore,
  defaultProfile,
  keys,
} from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import pino from 'pino';
import { EndpointLifecycle } from '../../src/endpoints/lifecycle';
import { EndpointRegistry } from '../../src/endpoints/registry';
import { ReservationBook } from '../../src/endpoints/reservations';

after(teardownAll);

let etcd: EtcdCluster;
let ds: Datastore;
const invalid: string[] = [];

before(async () => {
  etcd = await EtcdCluster.start({ size: 1 });
  ds = new Datastore({ endpoints: etcd.endpoints, onInvalid: (key) => invalid.push(key) });
  onTeardown('closing etcd client', () => ds.close());
});

async function rejectsWith(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DatastoreError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

test('pools: normalised, idempotent, overlaps/small/ipip-v6/malformed refused with clear messages', async () => {
  await ds.deletePrefix('/calico/');
  const pools = new PoolStore(ds);
  assert.deepEqual(await pools.add('10.1.1.1/8', { natOutgoing: true }), { cidr: '10.0.0.0/8', family: 4, natOutgoing: true, ipip: false });
  await pools.add('10.0.0.0/8', { natOutgoing: true, ipip: true });
  const raw = await ds.getRaw([keys.pool(4, '10.0.0.0/8')]);
  assert.deepEqual(JSON.parse(raw.get('/calico/v1/ipam/v4/pool/10.0.0.0-8')!.raw!), { cidr: '10.0.0.0/8', ipip: 'tunl0', masquerade: true });
  // A pool inside another is accepted (nested pools; was refused as an overlap).
  assert.deepEqual(await pools.add('10.5.0.0/16'), { cidr: '10.5.0.0/16', family: 4, natOutgoing: false, ipip: false });
  assert.equal(await pools.remove('10.5.0.0/16'), true);
  await rejectsWith(pools.add('172.16.0.0/27'), 'INVALID_ARGUMENT', /too small.*\/26/);
  await rejectsWith(pools.add('fd00::/123'), 'INVALID_ARGUMENT', /too small.*\/122/);
  await rejectsWith(pools.add('fd00::/64', { ipip: true }), 'INVALID_ARGUMENT', /--ipip is for IPv4/);
  await rejectsWith(pools.add('10.0.0.300/16'), 'INVALID_ARGUMENT', /not a CIDR/);
  await rejectsWith(pools.add('10.0.0.0'), 'INVALID_ARGUMENT', /not a CIDR/);
  await rejectsWith(pools.add('10.0.0.0/33'), 'INVALID_ARGUMENT', /prefix length/);
  await pools.add('fd80:24e2:f998:72d6:0::1/64');
  assert.deepEqual(
    (await pools.list()).map((p) => p.cidr),
    ['10.0.0.0/8', 'fd80:24e2:f998:72d6::/64'],
  );
  assert.deepEqual((await pools.list(6)).map((p) => p.cidr), ['fd80:24e2:f998:72d6::/64']);
  assert.equal((await pools.get('10.0.0.0/8'))?.ipip, true);
});

test('pools: usage, removal refused naming owners unless forced; default pools only when none exist', async () => {
  await ds.deletePrefix('/calico/');
  const pools = new PoolStore(ds);
  assert.deepEqual(await pools.ensureDefaultPools(), DEFAULT_POOLS);
  assert.deepEqual(await pools.ensureDefaultPools(), []);
  const ipam = new EtcdIpam(ds);
  await ipam.allocate({ handle: 'h-a', host: 'n1', ipv4: 'auto', attrs: { container: '0123456789abcdef' } });
  await ipam.allocate({ handle: 'h-b', host: 'n1', ipv4: 'auto', ipv6: 'auto' });
  const usage = await pools.listWithUsage();
  assert.deepEqual(
    usage.map((u) => [u.cidr, u.allocated, u.capacity]),
    [
      ['192.168.0.0/16', 2, '65536'],
      ['fd80:24e2:f998:72d6::/64', 1, '18446744073709551616'],
    ],
  );
  await rejectsWith(pools.remove('192.168.0.0/16'), 'REFUSED', /2 allocated addresses: .*container 0123456789ab.*handle h-a.*handle h-b.*--force/);
  assert.equal(await pools.remove('192.168.0.0/16', { force: true }), true);
  assert.equal(await pools.remove('192.168.0.0/16'), false);
  assert.deepEqual((await ipam.audit()).problems, []);
  assert.deepEqual((await ipam.listByHandle('h-b')).map((a) => a.family), [6]);
  assert.equal(await ipam.releaseByHandle('h-b'), 1);
  assert.equal(await pools.remove('fd80:24e2:f998:72d6::/64'), true);
  assert.deepEqual(await ds.listKeys('/calico/ipam/'), []);
});

function ep(host: string, cid: string, epid: string): Endpoint {
  return {
    host,
    containerId: cid,
    endpointId: epid,
    state: 'active',
    name: 'cali0123456789a',
    mac: 'ee:ee:ee:ee:ee:ee',
    'container:if_name': 'eth0',
    profile_ids: ['WEB'],
    ipv4_nets: ['192.168.0.1/32'],
    ipv6_nets: [],
  };
}

test('endpoints: put/get/list/delete, idempotent; an invalid stored value is reported, never crashes a reader', async () => {
  await ds.deletePrefix('/calico/');
  const eps = new EndpointStore(ds);
  const a = ep('h1', 'c'.repeat(64), 'e'.repeat(32));
  await eps.put(a);
  await eps.put(a);
  await eps.put(ep('h2', 'd'.repeat(64), 'f'.repeat(32)));
  assert.deepEqual(await eps.get(a), a);
  assert.equal((await eps.list()).length, 2);
  assert.deepEqual((await eps.list('h1')).map((e) => e.containerId), ['c'.repeat(64)]);
  assert.deepEqual((await eps.listForContainer('d'.repeat(64))).map((e) => e.host), ['h2']);
  // The stored shape is the 2015 endpoint JSON, keyed as in 2015.
  const raw = await ds.getRaw([keys.endpoint('h1', 'c'.repeat(64), 'e'.repeat(32))]);
  assert.deepEqual(Object.keys(JSON.parse([...raw.values()][0].raw!)).sort(), ['container:if_name', 'ipv4_nets', 'ipv6_nets', 'mac', 'name', 'profile_ids', 'state']);
  // Garbage written by hand: listed around, reported by key; a direct get names the key.
  const bad = keys.endpoint('h1', 'bad', 'x');
  await ds.put(bad, { state: 'sideways' });
  invalid.length = 0;
  assert.equal((await eps.list()).length, 2);
  assert.deepEqual(invalid, [bad]);
  await rejectsWith(eps.get({ host: 'h1', containerId: 'bad', endpointId: 'x' }), 'INVALID_VALUE', new RegExp(`${bad}.*state`));
  await assert.rejects(eps.put({ ...a, mac: 'nope' }), /mac/);
  assert.equal(await eps.delete(a), true);
  assert.equal(await eps.delete(a), false);
  assert.equal(await eps.deleteContainer('h2', 'd'.repeat(64)), 1);
  await assert.rejects(eps.get({ host: 'h/1', containerId: 'x', endpointId: 'y' }), /invalid host name/);
});

/**
 * The node's datastore, with a hook run once just before its next
 * compare-and-swap: what another writer does between the node's read and
 * its write (the race a sweep runs against `calicoctl profile P member add`).
 */
class Interleaved extends Datastore {
  before?: () => Promise<void>;
  casCalls = 0;
  override async cas(...args: Parameters<Datastore['cas']>): ReturnType<Datastore['cas']> {
    this.casCalls++;
    const hook = this.before;
    this.before = undefined;
    if (hook) await hook();
    return super.cas(...args);
  }
}

test('a sweep racing `member add` loses nothing: the node\'s write fails its compare, reads again and keeps the new profiles', async () => {
  await ds.deletePrefix('/calico/');
  const node = new Interleaved({ endpoints: etcd.endpoints });
  onTeardown('closing etcd client', () => node.close());
  const log = pino({ level: 'silent' });
  const lifecycle = new EndpointLifecycle({
    host: 'h1', store: new EndpointStore(node), registry: new EndpointRegistry(), reservations: new ReservationBook(),
    ipam: { lookup: async () => undefined }, log,
  });
  const cid = 'c'.repeat(64);
  const operator = new EndpointStore(ds); // calicoctl's own client
  const first = { ...ep('h1', cid, 'e'.repeat(32)), profile_ids: ['OPEN'] };
  assert.deepEqual((await lifecycle.record(first))?.profile_ids, ['OPEN']);

  // The sweep listed the record (OPEN) and now marks it inactive (the container
  // stopped); `profile QUAR member add` lands between its read and its write.
  const stale = (await new EndpointStore(node).list('h1'))[0]!;
  node.before = async () => void (await operator.setProfiles('h1', cid, () => ['QUAR']));
  node.casCalls = 0;
  const written = await lifecycle.record({ ...stale, state: 'inactive' });
  assert.ok(node.casCalls >= 2, `the first write lost the race and was retried (${node.casCalls} compare-and-swap calls)`);
  assert.deepEqual(written?.profile_ids, ['QUAR']);
  assert.deepEqual((await operator.list('h1')).map((e) => [e.state, e.profile_ids.join()]), [['inactive', 'QUAR']]);

  // A restart's Join (new endpoint id, the reservation's profiles) racing `member remove`.
  node.before = async () => void (await operator.setProfiles('h1', cid, () => ['QUAR2']));
  const restarted = await lifecycle.record({ ...first, endpointId: 'f'.repeat(32), name: 'califffffffffff' });
  assert.deepEqual(restarted?.profile_ids, ['QUAR2']);
  assert.deepEqual((await operator.list('h1')).map((e) => [e.endpointId, e.state, e.profile_ids.join()]), [['f'.repeat(32), 'active', 'QUAR2']], 'one record, the operator\'s profiles');

  // `member add` racing the node's write: its compare fails, it reads again and applies to the new record.
  const racing = new Interleaved({ endpoints: etcd.endpoints });
  onTeardown('closing etcd client', () => racing.close());
  racing.before = async () => void (await lifecycle.record({ ...first, endpointId: 'a'.repeat(32), name: 'caliaaaaaaaaaaa' }));
  await new EndpointStore(racing).setProfiles('h1', cid, () => ['LAST']);
  const now = await operator.list('h1');
  assert.deepEqual(now.map((e) => [e.endpointId, e.profile_ids.join()]), [['a'.repeat(32), 'QUAR2']], 'the record it read was replaced: nothing resurrected');
  await new EndpointStore(ds).setProfiles('h1', cid, () => ['LAST']);
  assert.deepEqual((await operator.list('h1')).map((e) => e.profile_ids.join()), ['LAST']);
  assert.equal(await lifecycle.forgetContainer(cid), 1);
});

test('hosts and BGP config: register, list, route reflectors, AS; profiles in the 2015 schema', async () => {
  await ds.deletePrefix('/calico/');
  const hosts = new HostStore(ds);
  await hosts.register('trinity10', { ip: '172.16.0.10' });
  await hosts.register('trinity20', { ip: '172.16.0.20', ip6: 'fd00::20', as: '64512' });
  assert.deepEqual(await hosts.list(), [
    { host: 'trinity10', ip: '172.16.0.10', ip6: undefined },
    { host: 'trinity20', ip: '172.16.0.20', ip6: 'fd00::20', as: '64512' },
  ]);
  const got = await ds.getRaw([keys.ready(), keys.interfacePrefix(), keys.hostBird6Ip('trinity10'), keys.hostConfigMarker('trinity10')]);
  assert.deepEqual([...got.values()].map((v) => v.raw), ['true', 'cali', '', 'created']);
  await assert.rejects(hosts.register('x', { ip: 'fd00::1' }), /not an IPv4 address/);
  await hosts.unregister('trinity10');
  assert.deepEqual((await hosts.list()).map((h) => h.host), ['trinity20']);

  const bgp = new BgpConfigStore(ds);
  assert.equal(await bgp.getAs(), '64511');
  await bgp.setAs('64512');
  assert.equal(await bgp.getAs(), '64512');
  await assert.rejects(bgp.setAs('abc'), /AS number/);
  await bgp.addRouteReflector('172.16.0.1');
  await bgp.addRouteReflector('172.16.0.1');
  await bgp.addRouteReflector('fd00::0001');
  assert.deepEqual(await bgp.listRouteReflectors(), ['172.16.0.1', 'fd00::1']);
  assert.equal(await bgp.removeRouteReflector('172.16.0.1'), true);
  assert.equal(await bgp.removeRouteReflector('172.16.0.1'), false);
  assert.equal(await bgp.getNodeMesh(), true);

  const profiles = new ProfileStore(ds);
  assert.equal(await profiles.ensure('PROF_GROUP1'), true);
  assert.equal(await profiles.ensure('PROF_GROUP1'), false);
  assert.deepEqual(await profiles.get('PROF_GROUP1'), defaultProfile('PROF_GROUP1'));
  await profiles.put({
    name: 'WEB',
    tags: ['WEB'],
    rules: {
      inbound_rules: [{ action: 'allow', protocol: 'tcp', dst_ports: [80, '8000:8080'], src_net: '10.0.0.0/8' }, { action: 'deny' }],
      outbound_rules: [{ action: 'allow' }],
    },
  });
  await ds.put(keys.profileRules('BROKEN'), { inbound_rules: [{ action: 'maybe' }], outbound_rules: [] });
  await ds.put(keys.profileTags('BROKEN'), ['BROKEN']);
  invalid.length = 0;
  assert.deepEqual((await profiles.list()).map((p) => p.name), ['PROF_GROUP1', 'WEB']);
  assert.deepEqual(invalid, [keys.profileRules('BROKEN')]);
  assert.equal(await profiles.delete('WEB'), true);
  assert.equal(await profiles.delete('WEB'), false);
});

test('an unreachable etcd fails within 3 s naming the endpoints tried (refused and silent ports)', async () => {
  const refused = `http://127.0.0.1:${await freePort()}`;
  // A listener that accepts and never answers: the hang case.
  const held = new Set<net.Socket>();
  const silent = net.createServer((sock) => {
    held.add(sock);
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  onTeardown('closing silent listener', () => {
    for (const s of held) s.destroy();
    silent.close();
  });
  const silentUrl = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
  for (const endpoints of [[refused], [silentUrl], [refused, silentUrl]]) {
    const d = new Datastore({ endpoints });
    const t0 = Date.now();
    await assert.rejects(d.ping(), (e: unknown) => {
      assert.ok(e instanceof DatastoreError);
      assert.equal(e.code, 'UNAVAILABLE');
      for (const u of endpoints) assert.ok(e.message.includes(u), e.message);
      return true;
    });
    assert.ok(Date.now() - t0 < 3000, `failed after ${Date.now() - t0} ms`);
    const ipam = new EtcdIpam(d);
    const t1 = Date.now();
    await assert.rejects(ipam.allocate({ handle: 'h', host: 'n', ipv4: 'auto' }), (e: unknown) => (e as { code?: string }).code === 'UNAVAILABLE');
    assert.ok(Date.now() - t1 < 3000, `allocate failed after ${Date.now() - t1} ms`);
    d.close();
  }
});

/** Puts `n` keys under `prefix` with values of `bytes` each, transactions under etcd's 1.5 MiB request limit. */
async function fill(prefix: string, n: number, bytes: number): Promise<void> {
  const value = 'x'.repeat(bytes);
  const per = Math.max(1, Math.min(100, Math.floor(1_000_000 / (bytes + 64))));
  for (let i = 0; i < n; i += per) {
    const ops = [];
    for (let j = i; j < Math.min(n, i + per); j++) ops.push({ request_put: { key: Buffer.from(`${prefix}${String(j).padStart(6, '0')}`), value: Buffer.from(value) } });
    await ds.client.kv.txn({ compare: [], success: ops });
  }
}

test('a prefix read larger than one gRPC message (12,000 keys, ~6 MiB) comes back whole, in key order', async () => {
  const prefix = '/calico/v1/test-big/';
  await fill(prefix, 12000, 512);
  const r = await ds.rangePrefix(prefix, false);
  assert.equal(r.kvs.length, 12000);
  assert.equal(r.more, false);
  assert.equal(r.kvs[0].key.toString(), `${prefix}000000`);
  assert.equal(r.kvs[11999].key.toString(), `${prefix}011999`);
  for (let i = 1; i < r.kvs.length; i++) assert.ok(Buffer.compare(r.kvs[i - 1].key, r.kvs[i].key) < 0, `key order at ${i}`);
  assert.equal((await ds.listKeys(prefix)).length, 12000);
  await ds.client.delete().prefix(prefix);
});

test('a paged prefix read is of one revision: a key written between its pages is not in it', async () => {
  const prefix = '/calico/v1/test-paged/';
  await fill(prefix, 30, 16);
  // Pages of 7 keys; between the first and second page, a key is added at the end.
  const range = ds.client.kv.range.bind(ds.client.kv);
  let calls = 0;
  ds.client.kv.range = async (req, opts) => {
    const r = await range(req, opts);
    if (++calls === 1) await ds.client.put(`${prefix}999999`).value('late');
    return r;
  };
  try {
    const r = await ds.rangePrefix(prefix, true, 7);
    assert.equal(calls, 5, 'pages of 7 keys over 30');
    assert.equal(r.kvs.length, 30);
    assert.ok(!r.kvs.some((kv) => kv.key.toString().endsWith('999999')), 'the late key is not in a read of the first page revision');
  } finally {
    ds.client.kv.range = range;
  }
  assert.equal((await ds.listKeys(prefix)).length, 31);
  await ds.client.delete().prefix(prefix);
});

test('a paged prefix read hands each page over as it arrives, the next one already asked for; a failing page ends the read', async () => {
  const prefix = '/calico/v1/test-pages/';
  await fill(prefix, 20, 16);
  const range = ds.client.kv.range.bind(ds.client.kv);
  let asked = 0;
  ds.client.kv.range = (req, opts) => {
    asked++;
    return range(req, opts);
  };
  try {
    const sizes: number[] = [];
    const askedBefore: number[] = [];
    await ds.rangePrefixPages(prefix, true, (kvs) => {
      sizes.push(kvs.length);
      askedBefore.push(asked);
    }, 7);
    assert.deepEqual(sizes, [7, 7, 6]);
    // While page n is decoded, page n+1 is on its way (the last page has no next).
    assert.deepEqual(askedBefore, [2, 3, 3]);
    await assert.rejects(
      ds.rangePrefixPages(prefix, true, () => {
        throw new Error('bad page');
      }, 7),
      /bad page/,
    );
  } finally {
    ds.client.kv.range = range;
  }
  await ds.client.delete().prefix(prefix);
});

test('six 1 MiB values in one page (over gRPC\'s default 4 MiB answer) come back', async () => {
  const prefix = '/calico/v1/test-fat/';
  await fill(prefix, 6, 1024 * 1024);
  const r = await ds.rangePrefix(prefix, false);
  assert.equal(r.kvs.length, 6);
  assert.equal(r.kvs[5].value.length, 1024 * 1024);
  await ds.client.delete().prefix(prefix);
});
