// A pool removal against block claims and against being cut short, on a
// real etcd: a claim deliberately interleaved with `pool remove` (the pool
// goes between the claim's two phases) leaves no block outside every pool;
// a removal cut short after it deleted the pool key leaves blocks outside
// every pool, which the next `calicoctl pool remove` of the same CIDR
// finishes, and which the reconciler's sweep (a real Reconciler against a
// real dockerd) collects when empty, two sightings a grace apart, while a
// block still holding an address is left and logged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { CALICOCTL_MAIN, EtcdCluster, PrivateDockerd, envWithoutEtcd, onTeardown, run, sleep, teardownAll } from '../harness';
import { sweeper } from './sweeper';
import { Datastore, PoolStore, keys, parseBlockKey } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { IpamError } from '../../src/ipam/types';

after(teardownAll);
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

let etcd: EtcdCluster;
let ds: Datastore;

before(async () => {
  etcd = await EtcdCluster.start({ size: 1 });
  ds = new Datastore({ endpoints: etcd.endpoints });
  onTeardown('closing etcd client', () => ds.close());
});

/** A datastore client whose transactions named by `match` first run `hook` (once, or every time). */
function hooked(match: RegExp, hook: (what: string, n: number) => Promise<void>): Datastore {
  const d = new Datastore({ endpoints: etcd.endpoints });
  onTeardown('closing hooked etcd client', () => d.close());
  const cas = d.cas.bind(d);
  let n = 0;
  d.cas = (async (...args: Parameters<typeof cas>) => {
    if (match.test(args[0])) await hook(args[0], ++n);
    return cas(...args);
  }) as typeof d.cas;
  return d;
}

async function blocksIn(prefix: string): Promise<string[]> {
  return (await ds.listKeys(keys.blocksDir(4))).filter((k) => k.includes(`/block/${prefix}`));
}

async function affinitiesOf(host: string): Promise<string[]> {
  return ds.listKeys(keys.hostAffinitiesDir(host, 4));
}

test('a block claim interleaved with pool remove (the pool goes between its two phases) withdraws: no block outside every pool', async () => {
  await ds.deletePrefix('/calico/');
  const pools = new PoolStore(ds);
  for (const [pool, want] of [['10.131.0.0/24', 'auto'], ['10.132.0.0/24', '10.132.0.5']] as const) {
    await pools.add(pool);
    let removed = false;
    // The claim's second phase ("creating block ...") runs only after the
    // whole `pool remove` (on another client) has finished.
    const racing = hooked(/^creating block /, async () => {
      if (removed) return;
      removed = true;
      assert.equal(await pools.remove(pool), true);
    });
    const ipam = new EtcdIpam(racing, { log });
    const err = await ipam.allocate({ handle: `resv-race-${want}`, host: 'race-host', ipv4: want }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await ipam.idle();
    assert.ok(removed, 'the pool was removed between the two phases of the claim');
    assert.ok(err instanceof IpamError, `the allocation failed: ${String(err)}`);
    if (want !== 'auto') assert.equal(err.code, 'NOT_IN_POOL', err.message);
    assert.deepEqual(await blocksIn(pool.split('.').slice(0, 2).join('.')), [], 'no block was created outside every pool');
    assert.deepEqual(await affinitiesOf('race-host'), [], 'no claim of the host is left');
    assert.deepEqual(await ipam.audit().then((a) => a.problems), []);
  }
});

/** Claims `n` blocks of `pool` (one per host) and frees their addresses again; returns the block keys. */
async function emptyBlocks(pool: string, hosts: string[]): Promise<string[]> {
  const ipam = new EtcdIpam(ds, { log });
  for (const h of hosts) {
    await ipam.allocate({ handle: `resv-fill-${h}`, host: h, ipv4: 'auto' });
    await ipam.releaseByHandle(`resv-fill-${h}`);
  }
  await ipam.idle();
  const prefix = pool.split('.').slice(0, 3).join('.');
  return blocksIn(prefix);
}

/** `pool remove` cut short: it deletes the pool key, then dies at its `killAt`-th block. */
async function cutShortRemove(pool: string, killAt: number, force = false): Promise<void> {
  const dying = hooked(/^removing block /, async (_what, n) => {
    if (n >= killAt) throw new Error('killed');
  });
  await assert.rejects(new PoolStore(dying).remove(pool, { force }), /killed/);
  assert.equal(await new PoolStore(ds).get(pool), undefined, 'the pool key went first');
}

test('a pool remove cut short is finished by the next pool remove of the same CIDR', async () => {
  await ds.deletePrefix('/calico/');
  const pool = '10.133.0.0/24';
  await new PoolStore(ds).add(pool);
  assert.equal((await emptyBlocks(pool, ['ha', 'hb', 'hc'])).length, 3);
  await cutShortRemove(pool, 2);
  assert.equal((await blocksIn('10.133.0.')).length, 2, 'two blocks are left outside every pool');
  const ctl = (...args: string[]) => run(process.execPath, [CALICOCTL_MAIN, ...args, '--etcd-endpoints', etcd.endpoints.join(',')], { env: envWithoutEtcd(), timeoutMs: 30000 });
  let r = await ctl('pool', 'remove', pool);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `Pool ${pool} was already removed; finished its removal: 2 leftover blocks removed\n`);
  assert.deepEqual(await blocksIn('10.133.0.'), []);
  for (const h of ['ha', 'hb', 'hc']) assert.deepEqual(await affinitiesOf(h), [], `${h}'s affinity went with its block`);
  r = await ctl('pool', 'remove', pool);
  assert.equal(r.stdout, `${pool} is not a configured pool.\n`, 'idempotent');

  // Cut short with an address still allocated in a leftover block: the next
  // removal refuses as the first would have (naming the owner), --force finishes.
  await new PoolStore(ds).add(pool);
  const ipam = new EtcdIpam(ds, { log });
  const [held] = await ipam.allocate({ handle: 'resv-held', host: 'hd', ipv4: 'auto' });
  await ipam.idle();
  await cutShortRemove(pool, 1, true);
  r = await ctl('pool', 'remove', pool);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`^Pool 10\\.133\\.0\\.0/24 is gone but its removal was cut short: its blocks still hold 1 allocated address: ${held!.address.replace(/\./g, '\\.')} \\(handle resv-held\\); release them or use --force`));
  assert.equal((await blocksIn('10.133.0.')).length, 1, 'a refused removal changes nothing');
  r = await ctl('pool', 'remove', pool, '--force');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `Pool ${pool} was already removed; finished its removal: 1 leftover block removed (forced: 1 allocated address released from it)\n`);
  assert.deepEqual(await blocksIn('10.133.0.'), []);
  assert.deepEqual((await ipam.audit()).problems, []);
});

test('blocks a cut-short pool remove left are collected by the sweep when empty (two sightings a grace apart); one holding an address stays', async () => {
  await ds.deletePrefix('/calico/');
  const d = await PrivateDockerd.start();
  const pool = '10.134.0.0/24';
  await new PoolStore(ds).add(pool);
  await new PoolStore(ds).add('10.135.0.0/24'); // another pool, whose block must stay
  const ipam = new EtcdIpam(ds, { log });
  const [empty] = await emptyBlocks(pool, ['ga']);
  const [used] = await ipam.allocate({ handle: 'resv-used', host: 'gb', ipv4: 'auto' });
  const [other] = await ipam.allocate({ handle: 'resv-other', host: 'gc', ipv4: '10.135.0.9' });
  await ipam.idle();
  await cutShortRemove(pool, 1, true);
  assert.equal((await blocksIn('10.134.0.')).length, 2, 'both blocks of the removed pool are left');
  const emptyCidr = parseBlockKey(empty!)!.cidr;
  const orphans = (await ipam.listOrphanBlocks()).map((b) => `${b.block} ${b.host} ${b.allocations}`).sort();
  assert.deepEqual(orphans, [`${emptyCidr} ga 0`, `${used!.block} gb 1`].sort());

  const grace = 1500;
  const reconciler = sweeper({ ds, ipam, dockerSocket: d.socket, host: 'gc-sweeper', log, gcGraceMs: grace });
  const first = await reconciler.sweep();
  assert.ok(first, 'dockerd answered');
  assert.deepEqual(first.removeOrphanBlocks, [], 'first sighting: nothing collected yet');
  assert.deepEqual(first.keptOrphanBlocks.map((k) => k.block.block), [used!.block], 'the block holding an address is reported');
  assert.equal((await blocksIn('10.134.0.')).length, 2);
  await sleep(grace + 100);
  const second = await reconciler.sweep();
  assert.deepEqual(second!.removeOrphanBlocks.map((r) => r.block.block), [emptyCidr]);
  assert.deepEqual(await blocksIn('10.134.0.'), [keys.block(4, used!.block)], 'the empty block went; the used one stays');
  assert.deepEqual(await affinitiesOf('ga'), [], 'with its affinity');
  assert.equal((await ipam.lookup(used!.address))?.handle, 'resv-used', 'its address is still its owner\'s');
  assert.equal((await ipam.lookup(other!.address))?.handle, 'resv-other', 'another pool\'s block is untouched');
  // Its owner releases it: the now empty block goes after its own two sightings.
  await ipam.releaseByHandle('resv-used');
  await reconciler.sweep();
  await sleep(grace + 100);
  const last = await reconciler.sweep();
  assert.deepEqual(last!.removeOrphanBlocks.map((r) => r.block.block), [used!.block]);
  assert.deepEqual(await blocksIn('10.134.0.'), []);
  assert.deepEqual((await ipam.audit()).problems, []);
  await reconciler.stop();
  await ipam.idle();
});
