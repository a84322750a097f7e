// IPAM semantics against a real etcd member: ownership, stale releases,
// FIFO reuse, exhaustion, borrowing, dual-stack all-or-none, GC hooks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EtcdCluster, teardownAll, onTeardown } from '../harness';
import { Datastore, PoolStore, keys } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { IpamError } from '../../src/ipam/types';

after(teardownAll);

let etcd: EtcdCluster;
let ds: Datastore;
let n = 0;
let last: EtcdIpam | undefined;

before(async () => {
  etcd = await EtcdCluster.start({ size: 1 });
  ds = new Datastore({ endpoints: etcd.endpoints });
  onTeardown('closing etcd client', () => ds.close());
});

/** A fresh keyspace per test: pools and IPAM state wiped, one new Ipam. */
async function fresh(pools: string[]): Promise<{ ipam: EtcdIpam; host: string }> {
  // A background block claim of the previous test must not land in this one's keyspace.
  await last?.idle();
  await ds.deletePrefix('/calico/');
  const ps = new PoolStore(ds);
  for (const p of pools) await ps.add(p);
  n++;
  last = new EtcdIpam(ds);
  return { ipam: last, host: `host-${n}` };
}

async function rejectsCode(p: Promise<unknown>, code: string, re?: RegExp): Promise<IpamError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof IpamError, `expected IpamError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected ${code}`);
}

test('auto allocation comes from a block claimed (confirmed) for the host, consecutive addresses', async () => {
  const { ipam, host } = await fresh(['10.10.0.0/16']);
  const [a] = await ipam.allocate({ handle: 'h1', host, ipv4: 'auto', attrs: { container: 'c1' } });
  const [b] = await ipam.allocate({ handle: 'h2', host, ipv4: 'auto' });
  assert.equal(a.family, 4);
  assert.equal(a.pool, '10.10.0.0/16');
  assert.equal(a.block, b.block);
  assert.match(a.block, /\/26$/);
  assert.equal(a.host, host);
  assert.deepEqual(a.attrs, { container: 'c1' });
  assert.notEqual(a.address, b.address);
  const aff = await ds.getRaw([keys.affinity(host, 4, a.block)]);
  assert.equal(JSON.parse(aff.get(keys.affinity(host, 4, a.block))!.raw!).state, 'confirmed');
  assert.deepEqual(await ipam.lookup(a.address), a);
  assert.deepEqual(await ipam.listByHandle('h1'), [a]);
  assert.equal((await ipam.listByHost(host)).length, 2);
  assert.deepEqual((await ipam.audit()).problems, []);
});

test('an explicit address already taken is refused naming its owner; outside every pool names the pools', async () => {
  const { ipam, host } = await fresh(['10.20.0.0/24', 'fd00:20::/120']);
  await ipam.allocate({ handle: 'owner1', host, ipv4: '10.20.0.7', attrs: { container: 'abc123' } });
  const e = await rejectsCode(ipam.allocate({ handle: 'other', host: 'elsewhere', ipv4: '10.20.0.7' }), 'IN_USE', /owner1.*abc123/);
  assert.equal(e.owner, 'owner1');
  await rejectsCode(ipam.allocate({ handle: 'x', host, ipv4: '10.99.0.1' }), 'NOT_IN_POOL', /10\.20\.0\.0\/24/);
  await rejectsCode(ipam.allocate({ handle: 'x', host, ipv6: 'fd99::1' }), 'NOT_IN_POOL', /fd00:20::\/120/);
  await rejectsCode(ipam.allocate({ handle: 'x', host, ipv4: 'fd00:20::1' }), 'INVALID');
  await rejectsCode(ipam.allocate({ handle: 'x', host }), 'INVALID');
  await rejectsCode(ipam.allocate({ handle: 'bad/handle', host, ipv4: 'auto' }), 'INVALID');
  const [v6] = await ipam.allocate({ handle: 'v6', host, ipv6: 'fd00:20::0005' });
  assert.equal(v6.address, 'fd00:20::5');
});

test('a stale release never frees the new owner; release is idempotent', async () => {
  const { ipam, host } = await fresh(['10.30.0.0/24']);
  const [a] = await ipam.allocate({ handle: 'old', host, ipv4: 'auto' });
  const [rec] = await ipam.listAllocations({ host });
  assert.equal(await ipam.releaseByHandle('old'), 1);
  assert.equal(await ipam.releaseByHandle('old'), 0);
  await ipam.allocate({ handle: 'new', host, ipv4: a.address });
  assert.equal(await ipam.releaseAddress(a.address, 'old'), false);
  assert.equal(await ipam.releaseIfUnchanged([rec]), 0);
  assert.equal((await ipam.lookup(a.address))?.handle, 'new');
  // Same handle re-allocated: the old sequence number still does not free it.
  assert.equal(await ipam.releaseByHandle('new'), 1);
  await ipam.allocate({ handle: 'old', host, ipv4: a.address });
  assert.equal(await ipam.releaseIfUnchanged([rec]), 0);
  assert.equal((await ipam.lookup(a.address))?.handle, 'old');
  assert.equal(await ipam.releaseAddress(a.address, 'old'), true);
  assert.equal(await ipam.releaseAddress(a.address, 'old'), false);
  assert.deepEqual((await ipam.audit()).problems, []);
});

test('freed addresses are reused last, oldest-freed first; a full pool is EXHAUSTED naming it', async () => {
  const { ipam, host } = await fresh(['10.40.0.0/26']);
  const got: string[] = [];
  for (let i = 0; i < 64; i++) got.push((await ipam.allocate({ handle: `h${i}`, host, ipv4: 'auto' }))[0].address);
  assert.equal(new Set(got).size, 64);
  await rejectsCode(ipam.allocate({ handle: 'more', host, ipv4: 'auto' }), 'EXHAUSTED', /10\.40\.0\.0\/26/);
  await ipam.releaseByHandle('h10');
  await ipam.releaseByHandle('h3');
  assert.equal((await ipam.allocate({ handle: 'n1', host, ipv4: 'auto' }))[0].address, got[10]);
  assert.equal((await ipam.allocate({ handle: 'n2', host, ipv4: 'auto' }))[0].address, got[3]);
  // With free never-used addresses left, a just-freed one waits its turn.
  const p = await fresh(['10.41.0.0/26']);
  const [x] = await p.ipam.allocate({ handle: 'x', host: p.host, ipv4: 'auto' });
  await p.ipam.releaseByHandle('x');
  const [y] = await p.ipam.allocate({ handle: 'y', host: p.host, ipv4: 'auto' });
  assert.notEqual(y.address, x.address);
});

test('a host claims a new block when its blocks are full, and borrows only when no block is free', async () => {
  const { ipam, host } = await fresh(['10.50.0.0/25']);
  const blocks = new Set<string>();
  for (let i = 0; i < 65; i++) blocks.add((await ipam.allocate({ handle: `a${i}`, host, ipv4: 'auto' }))[0].block);
  assert.equal(blocks.size, 2);
  await ipam.releaseByHandle('a0');
  const other = new EtcdIpam(ds);
  const [b] = await other.allocate({ handle: 'b0', host: 'other-host', ipv4: 'auto' });
  assert.ok(blocks.has(b.block), 'borrowed from the first host');
  assert.equal(b.host, 'other-host');
  assert.deepEqual((await ipam.audit()).problems, []);
});

test('dual stack is all-or-none; no pool of a family is NO_POOL', async () => {
  const { ipam, host } = await fresh(['10.60.0.0/26', 'fd00:60::/122']);
  const both = await ipam.allocate({ handle: 'ds', host, ipv4: 'auto', ipv6: 'auto' });
  assert.deepEqual(both.map((a) => a.family), [4, 6]);
  const f: string[] = [];
  for (let i = 0; i < 63; i++) f.push((await ipam.allocate({ handle: `f${i}`, host, ipv4: 'auto' }))[0].address);
  // v4 fails: the v6 that would have succeeded is not kept.
  await rejectsCode(ipam.allocate({ handle: 'half', host, ipv4: 'auto', ipv6: 'auto' }), 'EXHAUSTED', /10\.60\.0\.0\/26/);
  assert.deepEqual(await ipam.listByHandle('half'), []);
  // v6 fails: the v4 that would have succeeded is not kept.
  await ipam.releaseByHandle('f0');
  await rejectsCode(ipam.allocate({ handle: 'half', host, ipv4: 'auto', ipv6: both[1].address }), 'IN_USE', /handle ds/);
  assert.equal(await ipam.lookup(f[0]), undefined);
  assert.deepEqual(await ipam.listByHandle('half'), []);
  assert.equal(await ipam.releaseByHandle('ds'), 2);
  assert.deepEqual((await ipam.audit()).problems, []);
  const p = await fresh(['10.61.0.0/24']);
  await rejectsCode(p.ipam.allocate({ handle: 'v6', host: p.host, ipv6: 'auto' }), 'NO_POOL');
});

test('setAttrs merges into every allocation of the handle; GC finds unowned allocations and stale claims', async () => {
  const { ipam, host } = await fresh(['10.70.0.0/24', 'fd00:70::/120']);
  await ipam.allocate({ handle: 'resv-1', host, ipv4: 'auto', ipv6: 'auto', attrs: { source: 'proxy' } });
  await ipam.allocate({ handle: 'live', host, ipv4: 'auto' });
  await ipam.setAttrs('resv-1', { container: 'cafe' });
  for (const a of await ipam.listByHandle('resv-1')) assert.deepEqual(a.attrs, { source: 'proxy', container: 'cafe' });
  const dead = await ipam.findUnowned((h) => h === 'live', { host });
  assert.deepEqual(dead.map((d) => d.handle), ['resv-1', 'resv-1']);
  assert.ok(dead.every((d) => d.allocatedAt > 0 && Date.now() - d.allocatedAt < 60_000));
  assert.equal((await ipam.findUnowned(() => false, { olderThanMs: 3_600_000 })).length, 0);
  assert.equal(await ipam.releaseIfUnchanged(dead), 2);
  assert.equal((await ds.listKeys(keys.handlesDir())).length, 1);
  // A claim left pending by a crashed process is withdrawn.
  await ds.put(keys.affinity('crashed', 4, '10.70.0.192/26'), { state: 'pending', since: 1 });
  assert.deepEqual(await ipam.cleanupPendingAffinities(1000), { confirmed: 0, removed: 1 });
  const r = await ipam.audit();
  assert.deepEqual(r.problems, []);
  assert.equal(r.pendingAffinities, 0);
});

test('a forced pool removal leaves no dangling references, even for a host that has the pool cached', async () => {
  const { ipam, host } = await fresh(['10.80.0.0/24', '10.81.0.0/24']);
  const [a] = await ipam.allocate({ handle: 'h1', host, ipv4: 'auto' });
  assert.equal(a.pool, '10.80.0.0/24');
  await ipam.allocate({ handle: 'h1b', host, ipv4: 'auto' });
  assert.equal(await new PoolStore(ds).remove('10.80.0.0/24', { force: true }), true);
  const [b] = await ipam.allocate({ handle: 'h2', host, ipv4: 'auto' });
  assert.equal(b.pool, '10.81.0.0/24');
  assert.deepEqual(await ipam.listByHandle('h1'), []);
  assert.equal(await ipam.releaseByHandle('h1'), 0);
  const r = await ipam.audit();
  assert.deepEqual(r.problems, []);
  assert.equal(r.allocations, 1);
  assert.equal(r.handles, 1);
});
