// IPAM under concurrency and faults on a real three-member etcd cluster:
// 32 allocators acting as 8 hosts, 10,000 allocations with random releases,
// then the same while a member is killed (-9) and restarted, then a process
// killed -9 in the middle of allocating. Every run ends with an audit:
// blocks agree with handles, and etcd holds exactly what the allocators
// believe they hold.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { EtcdCluster, onTeardown, sleep, teardownAll, waitFor } from '../harness';
import { Datastore, PoolStore } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { IpamError } from '../../src/ipam/types';

const CHILD = process.env.IPAM_TEST_CHILD_ENDPOINTS;

/**
 * A TCP relay to one etcd member that, once `hold` is set, delivers etcd's
 * answers `delayMs` late: a client whose answers lag (as when it asked a
 * follower that applies entries late).
 */
async function laggingRelay(target: string, delayMs: number): Promise<{ url: string; hold: () => void }> {
  const { hostname, port } = new URL(target);
  let holding = false;
  const socks = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect(Number(port), hostname);
    for (const s of [client, up]) {
      socks.add(s);
      s.on('error', () => undefined);
    }
    client.pipe(up);
    up.on('data', (chunk) => (holding ? setTimeout(() => client.write(chunk), delayMs) : client.write(chunk)));
    up.on('close', () => client.destroy());
    client.on('close', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  onTeardown('closing lagging relay', () => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, hold: () => (holding = true) };
}

/** Child mode: allocate forever as host "doomed" until killed -9. */
async function childMain(endpoints: string[]): Promise<void> {
  const ipam = new EtcdIpam(new Datastore({ endpoints }));
  let n = 0;
  const worker = async (w: number): Promise<void> => {
    for (;;) {
      const i = n++;
      try {
        await ipam.allocate({ handle: `child-${w}-${i}`, host: 'doomed', ipv4: 'auto', ipv6: i % 3 === 0 ? 'auto' : undefined });
        process.stdout.write('.');
      } catch (e) {
        process.stderr.write(`${(e as Error).message}\n`);
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(worker));
}

const ALLOCATORS = 32;
const HOSTS = 8;
const TOTAL = 10_000;

interface RunStats {
  allocated: number;
  released: number;
  errors: Map<string, number>;
  /** Handles whose allocate/release ended in an error that leaves the outcome unknown. */
  uncertain: Set<string>;
  ambiguousReleases: number;
  live: Map<string, string>; // address -> handle, as the allocators believe
  ms: number;
}

/**
 * The workload: 8 hosts, each with two EtcdIpam instances (two processes on
 * the host: e.g. the node and a calicoctl), each instance driven by two
 * allocators. Instances of one host race on the same blocks; releases go
 * half through the allocator's own instance and half through a random other
 * host's (a reconciler elsewhere), so caches go stale under everyone. A
 * quarter of the requests are dual stack; after each allocation, with
 * probability 1/2 a random live handle of the allocator is released.
 *
 * A release takes effect when its transaction commits, which can be before
 * the releaser hears back (e.g. it asked a follower that applies the entry
 * late): another allocator may be handed the address in between. Such a
 * handover is allowed only while the previous holder's release is in
 * flight, and that release is then held to account like any other: it must
 * report every address of the holder freed (a lost update would leave it
 * less to free; only a fault run may have ambiguous releases, each checked
 * against etcd). Any other reuse is a duplicate.
 * The first failure stops every allocator, so none keeps writing into the
 * next test's keyspace.
 */
async function hammer(endpoints: string[], opts: { during?: (done: number) => Promise<void> } = {}): Promise<RunStats> {
  const clients = Array.from({ length: HOSTS }, () => new Datastore({ endpoints, timeoutMs: 2500 }));
  onTeardown('closing hammer clients', () => clients.forEach((c) => c.close()));
  const instances = Array.from({ length: HOSTS * 2 }, (_, k) => new EtcdIpam(clients[k % HOSTS]));
  const st: RunStats = { allocated: 0, released: 0, errors: new Map(), uncertain: new Set(), ambiguousReleases: 0, live: new Map(), ms: 0 };
  const byHandle = new Map<string, string[]>();
  /** Handles whose release is in flight. */
  const releasing = new Set<string>();
  let failure: unknown;
  let started = 0;
  let seq = 0;
  const t0 = Date.now();
  const note = (e: unknown, handle: string): void => {
    const code = e instanceof IpamError ? e.code : (e as Error).message;
    st.errors.set(code, (st.errors.get(code) ?? 0) + 1);
    st.uncertain.add(handle);
  };
  /** Drops h's addresses from the live view, except those already handed over to another handle. */
  const forget = (h: string): void => {
    for (const a of byHandle.get(h)!) if (st.live.get(a) === h) st.live.delete(a);
  };
  const allocator = async (i: number): Promise<void> => {
    const ipam = instances[i % instances.length];
    const host = `node-${i % HOSTS}`;
  const mine: string[] = [];
    while (started < TOTAL && failure === undefined) {
      started++;
      const handle = `w${i}-${seq++}`;
      try {
        const got = await ipam.allocate({ handle, host, ipv4: 'auto', ipv6: seq % 4 === 0 ? 'auto' : undefined, attrs: { container: handle } });
        for (const a of got) {
          const prev = st.live.get(a.address);
          assert.ok(prev === undefined || releasing.has(prev), `${a.address} given to ${handle} while ${prev} holds it`);
          st.live.set(a.address, handle);
        }
        byHandle.set(handle, got.map((a) => a.address));
        mine.push(handle);
        st.allocated++;
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        note(e, handle);
      }
      if (opts.during) await opts.during(st.allocated);
      if (mine.length && Math.random() < 0.5) {
        const h = mine.splice(Math.floor(Math.random() * mine.length), 1)[0];
        const releaser = Math.random() < 0.5 ? ipam : instances[Math.floor(Math.random() * instances.length)];
        releasing.add(h);
        try {
          const n = await releaser.releaseByHandle(h);
          if (n !== byHandle.get(h)!.length) {
            // A retried transaction whose first attempt landed finds nothing left to free.
            for (const a of byHandle.get(h)!) assert.notEqual((await ipam.lookup(a))?.handle, h, `release of ${h} freed ${n}`);
            st.ambiguousReleases++;
          }
          forget(h);
          byHandle.delete(h);
          st.released++;
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
          note(e, h);
          forget(h);
        } finally {
          releasing.delete(h);
        }
      }
    }
  };
  await Promise.all(
    Array.from({ length: ALLOCATORS }, (_, i) =>
      allocator(i).catch((e) => {
        failure ??= e;
      }),
    ),
  );
  st.ms = Date.now() - t0;
  await Promise.all(instances.map((i) => i.idle()));
  if (failure !== undefined) throw failure;
  return st;
}

/** etcd must hold exactly the allocators' view, apart from handles whose last operation failed ambiguously. */
async function reconcile(ipam: EtcdIpam, st: RunStats): Promise<void> {
  const report = await ipam.audit();
  assert.deepEqual(report.problems, [], 'blocks and handles agree');
  const stored = await ipam.listAllocations();
  const storedMap = new Map(stored.map((a) => [a.address, a.handle]));
  assert.equal(storedMap.size, stored.length, 'no address stored twice');
  for (const [addr, h] of st.live) assert.equal(storedMap.get(addr), h, `${addr} of ${h} is recorded in etcd`);
  const extra = stored.filter((a) => st.live.get(a.address) !== a.handle);
  for (const a of extra) assert.ok(st.uncertain.has(a.handle), `${a.address} held by ${a.handle} is accounted for`);
  // What an ambiguous failure left behind is reclaimable by GC, and then nothing is lost.
  await ipam.releaseHandles(new Set(extra.map((a) => a.handle)));
  const after = await ipam.listAllocations();
  assert.equal(after.length, st.live.size, 'every allocation accounted for');
  assert.deepEqual((await ipam.audit()).problems, []);
}

if (CHILD) {
  void childMain(CHILD.split(','));
} else {
  after(teardownAll);
  let etcd: EtcdCluster;
  let ds: Datastore;

  before(async () => {
    etcd = await EtcdCluster.start({ size: 3 });
    ds = new Datastore({ endpoints: etcd.endpoints });
    onTeardown('closing etcd client', () => ds.close());
  });

  async function freshPools(): Promise<void> {
    await ds.deletePrefix('/calico/');
    const pools = new PoolStore(ds);
    await pools.add('10.128.0.0/16');
    await pools.add('fd00:128::/112');
  }

  test('a release takes effect at its commit: the address may go to the next owner before the releaser hears back', async () => {
    // One block in the whole pool, so the next allocation can only reuse the freed address.
    await ds.deletePrefix('/calico/');
    await new PoolStore(ds).add('10.77.0.0/26');
    const owner = new EtcdIpam(ds);
    const addr = new Map<string, string>();
    for (let i = 0; i < 64; i++) addr.set(`full-${i}`, (await owner.allocate({ handle: `full-${i}`, host: 'h1', ipv4: 'auto' }))[0].address);
    const relay = await laggingRelay(etcd.endpoints[0], 1500);
    const slow = new Datastore({ endpoints: [relay.url], timeoutMs: 10_000 });
    onTeardown('closing lagging client', () => slow.close());
    await slow.ping();
    relay.hold();
    let answered = false;
    const release = new EtcdIpam(slow).releaseByHandle('full-17').finally(() => (answered = true));
    await waitFor('the release committed', async () => (await owner.lookup(addr.get('full-17')!)) === undefined, 10_000);
    const other = new EtcdIpam(ds);
    const [next] = await other.allocate({ handle: 'next', host: 'h1', ipv4: 'auto' });
    assert.equal(next.address, addr.get('full-17'));
    assert.equal(answered, false, 'the releaser has not heard back yet');
    assert.equal(await release, 1, 'and then hears that it freed the address');
    assert.deepEqual((await owner.audit()).problems, []);
    // No background block claim of this test may land in the next one's keyspace.
    await Promise.all([owner.idle(), other.idle()]);
  });

  test('32 allocators as 8 hosts, 10,000 allocations with random releases: no duplicates, nothing lost', async () => {
    await freshPools();
    const st = await hammer(etcd.endpoints);
    console.log(`allocated ${st.allocated}, released ${st.released}, live ${st.live.size} in ${st.ms} ms (${Math.round((st.allocated * 1000) / st.ms)}/s); errors ${JSON.stringify([...st.errors])}`);
    assert.equal(st.errors.size, 0, `no errors without faults: ${JSON.stringify([...st.errors])}`);
    assert.equal(st.ambiguousReleases, 0);
    assert.equal(st.allocated, TOTAL);
    await reconcile(new EtcdIpam(ds), st);
  });

  test('the same with the etcd leader killed -9 and restarted mid-run', async () => {
    await freshPools();
    let phase = 0;
    let victim = -1;
    let faultError: Error | undefined;
    const st = await hammer(etcd.endpoints, {
      during: async (done) => {
        if (phase === 0 && done >= TOTAL * 0.3) {
          phase = 1;
          void (async () => {
            // The leader: its loss forces an election while allocations are in flight.
            victim = await etcd.leaderIndex();
            await etcd.kill(victim);
            await sleep(1500);
            await etcd.restart(victim);
            phase = 2;
          })().catch((e) => {
            faultError = e as Error;
            phase = 2;
          });
        }
      },
    });
    await waitFor('member restarted', async () => phase === 2, 60_000);
    assert.equal(faultError, undefined, `killing and restarting the leader: ${faultError?.message}`);
    assert.ok(victim >= 0);
    console.log(`with fault: allocated ${st.allocated}, released ${st.released} in ${st.ms} ms; errors ${JSON.stringify([...st.errors])}; ambiguous releases ${st.ambiguousReleases}`);
    assert.ok(st.allocated >= TOTAL * 0.95, `most allocations succeed while a member is down (${st.allocated})`);
    await reconcile(new EtcdIpam(ds), st);
  });

  test('a process killed -9 mid-allocation leaves nothing a GC cannot reclaim', async () => {
    await freshPools();
    const child = spawn(process.execPath, [__filename], {
      env: { ...process.env, IPAM_TEST_CHILD_ENDPOINTS: etcd.endpoints.join(',') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTeardown('killing ipam child', () => void child.kill('SIGKILL'));
    let dots = 0;
    child.stdout.on('data', (b: Buffer) => (dots += b.length));
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    await waitFor(`child allocations (stderr: ${stderr})`, async () => dots >= 300, 60_000);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const ipam = new EtcdIpam(ds);
    const before = await ipam.listAllocations({ host: 'doomed' });
    assert.ok(before.length >= 300, `the child's allocations are in etcd (${before.length})`);
    // GC: nobody vouches for the child's handles; claims it left pending are withdrawn.
    await ipam.cleanupPendingAffinities(0);
    const dead = await ipam.findUnowned(() => false, { host: 'doomed' });
    assert.equal(await ipam.releaseIfUnchanged(dead), dead.length);
    const report = await ipam.audit();
    assert.deepEqual(report.problems, []);
    assert.equal(report.allocations, 0);
    assert.equal(report.handles, 0);
    assert.equal(report.pendingAffinities, 0);
    // And its blocks serve other hosts again.
    const [a] = await ipam.allocate({ handle: 'after', host: 'survivor', ipv4: 'auto' });
    assert.ok(a.address.startsWith('10.128.'));
  });
}
