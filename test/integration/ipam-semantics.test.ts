// IPAM semantics against a real etcd member: ownership, stale releases,
// FIFO reuse, exhaustion, borrowing, dual-stack all-or-none, GC hooks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EtcdCluster, teardownAll, onTeardown } from '../harness';
import { Datastore, PoolStore, keys } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { IpamError } from '../../src/ipam/types';
import { POOL_CACHE_MS } from '../../src/ipam/context';
import { json } from '../../src/datastore/datastore';
import { BlockValue } from '../../src/datastore/schemas';

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
  const e = await rejectsCode(ipam.allocate({ handle: 'other', host: 'elsewhere', ipv4: '10.20.0.7' }), 'IN_USE', /address 10\.20\.0\.7 belongs to container abc123 on host \S+; remove it first/);
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

// ----- nested pools (the blog post's "IP Management": restrict 192.168.0.0/16 to 192.168.89.0/24) -----

/** Blocks as stored: cidr -> pool field, host. */
async function storedBlocks(): Promise<Map<string, { pool: string; affinity: string | null; used: number }>> {
  const out = new Map<string, { pool: string; affinity: string | null; used: number }>();
  for (const b of await ds.list(keys.blocksDir(4), json(BlockValue))) {
    out.set(b.value.cidr, { pool: b.value.pool, affinity: b.value.affinity, used: b.value.allocations.filter((a) => a).length });
  }
  return out;
}

test('nested pool: between add and remove, auto addresses come from the narrower pool, also for a host that already has a block in the wide one', async () => {
  const { ipam, host } = await fresh(['192.168.0.0/16']);
  const [before] = await ipam.allocate({ handle: 'before', host, ipv4: 'auto' });
  assert.equal(before.pool, '192.168.0.0/16');
  assert.doesNotMatch(before.address, /^192\.168\.89\./, 'the host-hash offset of this host lies outside the subnet');
  await new PoolStore(ds).add('192.168.89.0/24');
  // A fresh process at once; a running one once its one-second pool list is stale.
  const [fromNew] = await new EtcdIpam(ds).allocate({ handle: 'new-process', host: 'other', ipv4: 'auto' });
  assert.equal(fromNew.pool, '192.168.89.0/24');
  assert.match(fromNew.address, /^192\.168\.89\./);
  await new Promise((r) => setTimeout(r, POOL_CACHE_MS + 50));
  const [after] = await ipam.allocate({ handle: 'after', host, ipv4: 'auto' });
  assert.equal(after.pool, '192.168.89.0/24');
  assert.match(after.address, /^192\.168\.89\./, 'not from the free addresses of the host\'s block in the wide pool');
  // Explicit addresses go to the narrowest pool containing them.
  assert.equal((await ipam.allocate({ handle: 'x1', host, ipv4: '192.168.89.200' }))[0].pool, '192.168.89.0/24');
  assert.equal((await ipam.allocate({ handle: 'x2', host, ipv4: '192.168.7.7' }))[0].pool, '192.168.0.0/16');
  const blocks = await storedBlocks();
  for (const [cidr, b] of blocks) {
    assert.equal(b.pool, cidr.startsWith('192.168.89.') ? '192.168.89.0/24' : '192.168.0.0/16', `pool of block ${cidr}`);
  }
  // Usage counts each block once, in its narrowest pool.
  const usage = await new PoolStore(ds).listWithUsage(4);
  assert.deepEqual(usage.map((p) => [p.cidr, p.allocated]), [['192.168.0.0/16', 2], ['192.168.89.0/24', 3]]);
  assert.deepEqual((await ipam.audit()).problems, []);
});

test('nested pool: the wide pool serves once the narrow one is full, without claiming blocks inside it', async () => {
  const { ipam, host } = await fresh(['10.90.0.0/22', '10.90.1.0/25']);
  const got: { address: string; pool: string; block: string }[] = [];
  for (let i = 0; i < 128; i++) got.push((await ipam.allocate({ handle: `n${i}`, host, ipv4: 'auto' }))[0]);
  assert.ok(got.every((a) => a.pool === '10.90.1.0/25'), 'the narrow pool first, to its last address');
  assert.equal(new Set(got.map((a) => a.address)).size, 128);
  const wide = [];
  for (let i = 0; i < 3; i++) wide.push((await ipam.allocate({ handle: `w${i}`, host, ipv4: 'auto' }))[0]);
  // A second host finds the narrow pool full too.
  const other = new EtcdIpam(ds);
  wide.push((await other.allocate({ handle: 'w-other', host: 'other-host', ipv4: 'auto' }))[0]);
  for (const a of wide) {
    assert.equal(a.pool, '10.90.0.0/22', a.address);
    assert.doesNotMatch(a.address, /^10\.90\.1\.([0-9]|[1-9][0-9]|1[01][0-9]|12[0-7])$/, `${a.address} lies in the narrow pool`);
  }
  const blocks = await storedBlocks();
  assert.equal(blocks.size, 4, [...blocks.keys()].join(' '));
  for (const [cidr, b] of blocks) {
    const narrow = cidr === '10.90.1.0/26' || cidr === '10.90.1.64/26';
    assert.equal(b.pool, narrow ? '10.90.1.0/25' : '10.90.0.0/22', cidr);
  }
  // Freed narrow addresses are preferred again by the host that owns the block.
  await ipam.releaseByHandle('n5');
  assert.equal((await ipam.allocate({ handle: 'again', host, ipv4: 'auto' }))[0].pool, '10.90.1.0/25');
  await other.idle();
  assert.deepEqual((await ipam.audit()).problems, []);
});

test('nested pool: removing the wide pool keeps the narrow pool\'s allocations, refuses while an address outside it is in use', async () => {
  const { ipam, host } = await fresh(['192.168.0.0/16', '192.168.89.0/24']);
  const store = new PoolStore(ds);
  const [inNarrow] = await ipam.allocate({ handle: 'resv-narrow', host, ipv4: 'auto', attrs: { container: 'c0ffee000000aaaa' } });
  assert.equal(inNarrow.pool, '192.168.89.0/24');
  const [outside] = await ipam.allocate({ handle: 'resv-outside', host, ipv4: '192.168.3.4', attrs: { container: 'beef00000000bbbb' } });
  assert.equal(outside.pool, '192.168.0.0/16');
  await assert.rejects(store.remove('192.168.0.0/16'), (e: Error) => {
    assert.match(e.message, /^pool 192\.168\.0\.0\/16 has 1 allocated address: 192\.168\.3\.4 \(container beef00000000, handle resv-outside\); release them or use --force$/);
    assert.doesNotMatch(e.message, /resv-narrow/, 'the narrow pool\'s address is not the wide pool\'s to name');
    return true;
  });
  assert.ok(await store.get('192.168.0.0/16'), 'refused: still there');
  await ipam.releaseByHandle('resv-outside');
  // An empty block of the wide pool, affine to the host: goes with the pool.
  await ipam.allocate({ handle: 'tmp', host, ipv4: '192.168.5.5' });
  await ipam.releaseByHandle('tmp');
  assert.equal(await store.remove('192.168.0.0/16'), true);
  assert.deepEqual((await store.list(4)).map((p) => p.cidr), ['192.168.89.0/24']);
  const kept = await ipam.lookup(inNarrow.address);
  assert.equal(kept?.handle, 'resv-narrow');
  assert.equal(kept?.pool, '192.168.89.0/24');
  assert.deepEqual((await ipam.listByHandle('resv-narrow')).map((a) => a.address), [inNarrow.address]);
  const blocks = await storedBlocks();
  assert.deepEqual([...blocks.keys()], [inNarrow.block], 'only the narrow pool\'s block is left');
  const affinities = (await ds.listKeys(keys.affinitiesRoot())).map((k) => k.split('/').pop());
  assert.deepEqual(affinities, [inNarrow.block.replace('/', '-')]);
  // The host keeps allocating from its narrow block; the wide pool's space is gone.
  const [next] = await ipam.allocate({ handle: 'resv-next', host, ipv4: 'auto' });
  assert.equal(next.block, inNarrow.block);
  await rejectsCode(ipam.allocate({ handle: 'out', host, ipv4: '192.168.3.4' }), 'NOT_IN_POOL', /192\.168\.89\.0\/24/);
  const r = await ipam.audit();
  assert.deepEqual(r.problems, []);
  assert.equal(r.allocations, 2);
  // Removing the narrow pool inside a remaining wide one: its blocks pass to the wide pool, nothing is lost.
  const p = await fresh(['10.95.0.0/16', '10.95.7.0/24']);
  const [n7] = await p.ipam.allocate({ handle: 'n7', host: p.host, ipv4: 'auto' });
  assert.equal(n7.pool, '10.95.7.0/24');
  assert.equal(await new PoolStore(ds).remove('10.95.7.0/24'), true);
  assert.equal((await p.ipam.lookup(n7.address))?.pool, '10.95.0.0/16');
  assert.deepEqual((await p.ipam.audit()).problems, []);
});
