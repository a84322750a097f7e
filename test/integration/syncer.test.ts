// The datastore syncer against real etcd: the first snapshot and every later
// change in order (each kind, puts, deletes, a transaction, an invalid value
// reported and skipped, a throwing listener); a compaction past the watch's
// revision (the watch stream held back by a loopback proxy that stops
// forwarding, then etcd compacts) answered by a resync equal to a fresh read;
// a cluster member restart survived with the changes made meanwhile; stop()
// prompt while etcd is down; timings for 1000 endpoints.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pino, { Logger } from 'pino';
import { EtcdCluster, freePort, onTeardown, teardownAll, waitFor } from '../harness';
import { BgpConfigStore, Datastore, EndpointStore, HostStore, keys, PoolStore, ProfileStore } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { DatastoreSnapshot, SERVED_PREFIX, SyncerEvent, Syncer, SyncState } from '../../src/syncer';

after(teardownAll);

let etcd: EtcdCluster;
let ds: Datastore;

before(async () => {
  etcd = await EtcdCluster.start({ size: 1 });
  ds = new Datastore({ endpoints: etcd.endpoints, onInvalid: () => undefined });
  onTeardown('closing etcd client', () => ds.close());
});

/** A logger whose lines the test can read (and which prints nothing). */
function memoryLog(): { log: Logger; lines: { msg: string; reason?: string }[] } {
  const lines: { msg: string; reason?: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** A syncer on its own client (so its connection can be cut apart from the test's). */
function makeSyncer(endpoints: string[]): { syncer: Syncer; client: Datastore; invalid: string[]; lines: { msg: string; reason?: string }[] } {
  const invalid: string[] = [];
  const { log, lines } = memoryLog();
  const client = new Datastore({ endpoints, timeoutMs: 1000, log, onInvalid: (key) => invalid.push(key) });
  const syncer = new Syncer(client, log, { retryMaxMs: 500 });
  onTeardown('stopping syncer', async () => {
    await syncer.stop();
    client.close();
  });
  return { syncer, client, invalid, lines };
}

/** The snapshot as plain data, revision aside. */
function view(s: DatastoreSnapshot): unknown {
  const sorted = <V>(m: ReadonlyMap<string, V>) => [...m.entries()].sort(([a], [b]) => a.localeCompare(b));
  return { pools: sorted(s.pools), hosts: sorted(s.hosts), endpoints: sorted(s.endpoints), profiles: sorted(s.profiles), raw: sorted(s.raw) };
}

/** An independent read of everything served, on the test's own client. */
async function freshView(on: Datastore = ds): Promise<unknown> {
  const r = await on.rangePrefix(SERVED_PREFIX, false);
  return view(SyncState.fromKvs((kv, codec) => on.decodeAll([kv], codec)[0]?.value, r.kvs, r.header.revision).snapshot());
}

async function currentRevision(on: Datastore = ds): Promise<string> {
  return (await on.client.kv.range({ key: Buffer.from('/'), count_only: true })).header.revision;
}

async function caughtUp(syncer: Syncer, revision: string, on: Datastore = ds): Promise<boolean> {
  const cur = syncer.current();
  if (!cur || BigInt(cur.revision) < BigInt(revision)) return false;
  assert.deepEqual(view(cur), await freshView(on));
  return true;
}

const EP = { state: 'active' as const, name: 'cali0123456789a', mac: 'ee:ee:ee:ee:ee:ee', 'container:if_name': 'eth0', profile_ids: ['web'], ipv4_nets: ['192.168.0.1/32'], ipv6_nets: [] };

test('snapshot, then every change in order: each kind, puts, deletes, a transaction, an invalid value skipped and reported', async () => {
  await ds.deletePrefix('/calico/');
  await new PoolStore(ds).add('10.0.0.0/16', { natOutgoing: true });
  await new HostStore(ds).register('n1', { ip: '172.17.0.2' });
  await new ProfileStore(ds).put({ name: 'web', tags: ['web'], rules: { inbound_rules: [], outbound_rules: [{ action: 'allow' }] } });
  const eps = new EndpointStore(ds);
  await eps.put({ host: 'n1', containerId: 'c1', endpointId: 'e1', ...EP });
  await new BgpConfigStore(ds).setAs('64512');
  const badAtStart = keys.endpoint('n1', 'c0', 'e0');
  await ds.put(badAtStart, { state: 'active' });
  // Block IPAM is not served.
  await new EtcdIpam(ds).allocate({ handle: 'h1', host: 'n1', ipv4: 'auto' });

  const { syncer, invalid } = makeSyncer(etcd.endpoints);
  await syncer.start();
  const first = await syncer.whenSynced();
  assert.equal(syncer.current(), first);
  assert.deepEqual(view(first), await freshView());
  const firstView = view(first);
  assert.deepEqual([...first.pools.keys()], ['10.0.0.0/16']);
  assert.equal(first.pools.get('10.0.0.0/16')!.natOutgoing, true);
  assert.equal(first.hosts.get('n1')!.ip, '172.17.0.2');
  assert.deepEqual([...first.endpoints.keys()], [keys.endpoint('n1', 'c1', 'e1')]);
  assert.equal(first.raw.get(keys.bgpAs()), '64512');
  assert.ok([...first.raw.keys()].every((k) => k.startsWith('/calico/v1/')));
  assert.deepEqual(invalid, [badAtStart]);

  const calls: string[] = [];
  const events: SyncerEvent[] = [];
  syncer.subscribe((e) => {
    calls.push(`thrower:${e.type}`);
    throw new Error('listener bug');
  });
  syncer.subscribe((e) => {
    calls.push(`recorder:${e.type}`);
    events.push(e);
  });
  // A new listener gets the current snapshot at once.
  assert.deepEqual(calls, ['thrower:snapshot', 'recorder:snapshot']);
  assert.equal(events[0].snapshot, first);

  const e2 = keys.endpoint('n1', 'c2', 'e1');
  const e3 = keys.endpoint('n1', 'c3', 'e1');
  const e4 = keys.endpoint('n2', 'c4', 'e1');
  const written: string[] = [];
  const step = async (key: string, f: () => Promise<unknown>): Promise<void> => {
    await f();
    written.push(key);
  };
  await step(e2, () => ds.put(e2, { ...EP, name: 'cali2' }));
  await step(keys.profileTags('db'), () => ds.put(keys.profileTags('db'), ['db']));
  await step(keys.pool(6, 'fd00::/64'), () => ds.put(keys.pool(6, 'fd00::/64'), { cidr: 'fd00::/64' }));
  await step(keys.hostBirdIp('n2'), () => ds.put(keys.hostBirdIp('n2'), '172.17.0.3', true));
  await step(keys.bgpNodeMesh(), () => ds.put(keys.bgpNodeMesh(), { enabled: false }));
  await step(e3, () => ds.put(e3, { ...EP, mac: 'not-a-mac' }));
  await step(keys.endpoint('n1', 'c1', 'e1'), () => eps.delete({ host: 'n1', containerId: 'c1', endpointId: 'e1' }));
  await step(keys.pool(4, '10.0.0.0/16'), () => ds.delete(keys.pool(4, '10.0.0.0/16')));
  // One transaction: two keys at one revision.
  await ds.cas('two at once', [], [{ key: keys.profileRules('db'), value: { inbound_rules: [], outbound_rules: [] } }, { key: e4, value: EP }]);
  written.push(keys.profileRules('db'), e4);
  const last = await currentRevision();

  await waitFor('the syncer to reach the last write', () => caughtUp(syncer, last));
  const updates = events.slice(1);
  assert.ok(updates.every((e) => e.type === 'update'));
  assert.deepEqual(updates.flatMap((e) => (e.type === 'update' ? e.keys : [])), written);
  const kinds = new Set(updates.flatMap((e) => (e.type === 'update' ? [...e.changed] : [])));
  assert.deepEqual([...kinds].sort(), ['config', 'endpoints', 'hosts', 'pools', 'profiles']);
  // Revisions only go up; the thrower was called before the recorder every time.
  const revs = events.map((e) => BigInt(e.snapshot.revision));
  assert.ok(revs.every((r, i) => i === 0 || r > revs[i - 1]));
  assert.deepEqual(calls, events.flatMap((e) => [`thrower:${e.type}`, `recorder:${e.type}`]));

  const s = syncer.current()!;
  assert.deepEqual([...s.endpoints.keys()].sort(), [e2, e4]);
  assert.deepEqual([...s.pools.keys()], ['fd00::/64']);
  assert.deepEqual(s.profiles.get('db'), { name: 'db', tags: ['db'], rules: { inbound_rules: [], outbound_rules: [] } });
  assert.equal(s.hosts.get('n2')!.ip, '172.17.0.3');
  assert.equal(s.raw.get(keys.bgpNodeMesh()), '{"enabled":false}');
  assert.deepEqual(invalid, [badAtStart, e3]);
  // Snapshots handed out earlier are as they were.
  assert.deepEqual(view(first), firstView);
  await syncer.stop();
  await syncer.stop();
});

/**
 * Loopback TCP proxy that can stop forwarding without closing anything: the
 * client sees a healthy but silent connection, etcd's send window fills and
 * the watch falls behind, as behind a congested link.
 */
class HoldingProxy {
  private readonly sockets: net.Socket[] = [];
  private readonly server: net.Server;
  url = '';

  private constructor(target: URL) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port), target.hostname);
      this.sockets.push(client, upstream);
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d) => client.write(d));
      const close = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', close).on('error', close);
      upstream.on('close', close).on('error', close);
    });
  }

  static async start(target: string): Promise<HoldingProxy> {
    const p = new HoldingProxy(new URL(target));
    const port = await freePort();
    await new Promise<void>((r) => p.server.listen(port, '127.0.0.1', r));
    p.url = `http://127.0.0.1:${port}`;
    onTeardown('closing proxy', () => p.close());
    return p;
  }

  hold(): void {
    for (const s of this.sockets) s.pause();
  }

  release(): void {
    for (const s of this.sockets) s.resume();
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

test('a compaction past the watch revision: etcd cancels the watch, the syncer resyncs to a correct snapshot', async () => {
  await ds.deletePrefix('/calico/');
  await ds.put(keys.endpoint('n1', 'c1', 'e1'), EP);
  const proxy = await HoldingProxy.start(etcd.endpoints[0]);
  const { syncer, lines } = makeSyncer([proxy.url]);
  await syncer.start();
  const snapshots: DatastoreSnapshot[] = [];
  syncer.subscribe((e) => e.type === 'snapshot' && snapshots.push(e.snapshot));
  await ds.put(keys.endpoint('n1', 'c2', 'e1'), EP);
  await waitFor('the watch to deliver', async () => syncer.current()!.endpoints.size === 2);

  proxy.hold();
  // Far more revisions than etcd buffers for a stream (128 responses plus the
  // HTTP/2 window), so the watch falls behind for good while held.
  const filler = 'x'.repeat(1024);
  for (let i = 0; i < 1500; i += 25) {
    await Promise.all(Array.from({ length: 25 }, (_, j) => ds.put(`${keys.configDir()}filler-${(i + j) % 10}`, filler, true)));
  }
  await ds.put(keys.endpoint('n1', 'c3', 'e1'), EP);
  await ds.delete(keys.endpoint('n1', 'c1', 'e1'));
  const last = await currentRevision();
  await ds.client.kv.compact({ revision: last });
  proxy.release();

  await waitFor('the resync after compaction', () => caughtUp(syncer, last), 20_000);
  const resyncs = lines.filter((l) => l.msg === 'datastore syncer: resyncing');
  assert.ok(resyncs.length >= 1, 'no resync');
  assert.match(resyncs[0].reason!, /cancelled by etcd/);
  assert.ok(!resyncs.some((l) => /stream lost/.test(l.reason!)), 'the connection was never cut');
  assert.ok(snapshots.length >= 2 && BigInt(snapshots[snapshots.length - 1].revision) >= BigInt(last));
  assert.deepEqual([...syncer.current()!.endpoints.keys()].sort(), [keys.endpoint('n1', 'c2', 'e1'), keys.endpoint('n1', 'c3', 'e1')]);
  // And it follows the watch again.
  await ds.put(keys.endpoint('n1', 'c4', 'e1'), EP);
  await waitFor('a change after the resync', async () => syncer.current()!.endpoints.has(keys.endpoint('n1', 'c4', 'e1')));
  await syncer.stop();
});

test('1000 endpoints: snapshot and updates (timings as diagnostics)', async (t) => {
  await ds.deletePrefix('/calico/');
  for (let i = 0; i < 1000; i += 100) {
    const puts = Array.from({ length: 100 }, (_, j) => ({ key: keys.endpoint(`n${(i + j) % 10}`, `c${i + j}`, 'e1'), value: { ...EP, name: `cali${i + j}` } }));
    await ds.cas('endpoints', [], puts);
  }
  const { syncer, lines } = makeSyncer(etcd.endpoints);
  const t0 = performance.now();
  await syncer.start();
  const t1 = performance.now();
  assert.equal(syncer.current()!.endpoints.size, 1000);
  let delivered = 0;
  syncer.subscribe((e) => {
    if (e.type === 'update') delivered = performance.now();
  });
  const latencies: number[] = [];
  for (let i = 0; i < 20; i++) {
    const key = keys.endpoint('n1', `c${i}`, 'e1');
    const t2 = performance.now();
    await ds.put(key, { ...EP, name: 'caliNew' });
    await waitFor('the update', async () => syncer.current()!.endpoints.get(key)?.name === 'caliNew', 5000, 1);
    latencies.push(delivered - t2);
  }
  const applied = lines.filter((l) => l.msg === 'watch events applied').map((l) => (l as unknown as { ms: number }).ms);
  assert.equal(applied.length, 20);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)].toFixed(2);
  t.diagnostic(
    `1000 endpoints: snapshot (read + decode) ${(t1 - t0).toFixed(1)} ms; one update: applied in ${median(applied)} ms, put -> listener ${median(latencies)} ms (medians of 20)`,
  );
  await syncer.stop();
});

test('the first read failing fails start() naming the endpoints; stop() without start is fine and idempotent', async () => {
  const port = await freePort();
  const { syncer } = makeSyncer([`127.0.0.1:${port}`]);
  await assert.rejects(syncer.start(), new RegExp(`etcd (unreachable|did not answer).*127\\.0\\.0\\.1:${port}`));
  assert.equal(syncer.current(), undefined);
  const never = makeSyncer(etcd.endpoints).syncer;
  const synced = never.whenSynced();
  await never.stop();
  await never.stop();
  await assert.rejects(synced, /stopped before its first snapshot/);
});

test('stop() is prompt while etcd is down (resync retrying)', async () => {
  const { syncer, lines } = makeSyncer(etcd.endpoints);
  await syncer.start();
  let after = 0;
  await etcd.kill(0);
  await waitFor('a failed resync', async () => lines.some((l) => l.msg === 'datastore syncer: resync failed; retrying'), 15_000);
  syncer.subscribe(() => after++);
  after = 0;
  const t0 = Date.now();
  await syncer.stop();
  const took = Date.now() - t0;
  assert.ok(took < 1000, `stop took ${took} ms`);
  await syncer.stop();
  assert.equal(after, 0);
  await etcd.restart(0);
});

test('a cluster member restart: the watch is lost, changes made meanwhile arrive, the watch resumes', async () => {
  const cluster = await EtcdCluster.start({ size: 3 });
  const others = new Datastore({ endpoints: cluster.endpoints.slice(1), onInvalid: () => undefined });
  onTeardown('closing cluster client', () => others.close());
  await others.deletePrefix('/calico/');
  await others.put(keys.endpoint('n1', 'c1', 'e1'), EP);
  // The syncer knows only member 0, so it has to wait for that member.
  const { syncer, lines } = makeSyncer([cluster.endpoints[0]]);
  await syncer.start();
  const snapshots: string[] = [];
  syncer.subscribe((e) => e.type === 'snapshot' && snapshots.push(e.snapshot.revision));

  await cluster.kill(0);
  await waitFor('the syncer to notice', async () => lines.some((l) => l.msg === 'datastore syncer: resyncing' && /stream lost/.test(l.reason!)), 15_000);
  // Writes through the other two members (retried across a re-election).
  await waitFor('writes while member 0 is down', async () => {
    await others.put(keys.endpoint('n1', 'c2', 'e1'), EP);
    await others.delete(keys.endpoint('n1', 'c1', 'e1'));
    await others.put(keys.profileTags('p'), ['p']);
    return true;
  }, 30_000, 200);
  const last = await currentRevision(others);
  await cluster.restart(0);
  await waitFor('the resync after restart', () => caughtUp(syncer, last, others), 30_000, 100);
  assert.ok(snapshots.length >= 2, 'a fresh snapshot was reported');
  assert.deepEqual([...syncer.current()!.endpoints.keys()], [keys.endpoint('n1', 'c2', 'e1')]);
  assert.ok(syncer.current()!.profiles.has('p'));
  await others.put(keys.endpoint('n1', 'c3', 'e1'), EP);
  await waitFor('a change after the restart', async () => syncer.current()!.endpoints.has(keys.endpoint('n1', 'c3', 'e1')), 10_000);
  await syncer.stop();
});
