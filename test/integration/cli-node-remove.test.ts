// `calicoctl node remove` against a real etcd, through the compiled
// calicoctl: refused (changing nothing) while the host's node holds its
// lease and while it has endpoint records without --remove-endpoints; a
// removal cut short midway is finished by the next run; a node that comes
// back midway stops it; the dead host's addresses, blocks, affinities,
// endpoint records and host keys go, another host's (including an address
// it borrowed from the dead host's block) stay; a second run says it is
// already gone. The lab test (trinity-node-remove) does it with real nodes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CALICOCTL_MAIN, EtcdCluster, envWithoutEtcd, onTeardown, run, RunResult, teardownAll } from '../harness';
import { BgpConfigStore, BlockValue, Datastore, HostRecords, HostStore, NodeIdentityStore, PoolStore, json, keys } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { IpamContext } from '../../src/ipam/context';
import { releaseHost } from '../../src/ipam/gc';

after(teardownAll);

const POOL = '10.141.0.0/24';
const DEAD = 'deadh';
const LIVE = 'liveh';
let etcd: EtcdCluster;
let ds: Datastore;

before(async () => {
  etcd = await EtcdCluster.start({ size: 1 });
  ds = new Datastore({ endpoints: etcd.endpoints });
  onTeardown('closing etcd client', () => ds.close());
});

function ctl(...args: string[]): Promise<RunResult> {
  return run(process.execPath, [CALICOCTL_MAIN, ...args, '--etcd-endpoints', etcd.endpoints.join(',')], { env: envWithoutEtcd(), timeoutMs: 30000 });
}

/** Every key and value under /calico, with mod revisions: "nothing changed" means this is equal. */
async function snapshot(): Promise<string[]> {
  const r = await ds.rangePrefix('/calico/', false);
  return r.kvs.map((kv) => `${kv.key.toString()}@${kv.mod_revision}=${kv.value.toString()}`);
}

function endpointValue(ip: string): unknown {
  return { state: 'active', name: `cali${ip.replace(/\./g, '').slice(-11)}`, mac: 'ee:ee:ee:ee:ee:ee', 'container:if_name': 'eth0', profile_ids: ['web'], ipv4_nets: [`${ip}/32`], ipv6_nets: [] };
}

interface World {
  dead: string[];
  borrowed: string;
  live: string;
}

/** Two hosts: DEAD with 3 addresses, 2 endpoint records, a BGP peer and a pending claim; LIVE with its own, one borrowed from DEAD's block. */
async function world(): Promise<World> {
  await ds.deletePrefix('/calico/');
  await new PoolStore(ds).add(POOL);
  const ipam = new EtcdIpam(ds);
  const dead: string[] = [];
  for (const [i, h] of ['resv-d1', 'resv-d2', 'docker-d3'].entries()) {
    const [a] = await ipam.allocate({ handle: h, host: DEAD, ipv4: 'auto', attrs: { container: `${i}`.repeat(64) } });
    dead.push(a!.address);
  }
  // LIVE's explicit address inside DEAD's block (the borrowing case): it must survive.
  const deadBlock = (await ipam.lookup(dead[0]!))!.block;
  const borrowedIp = deadBlock.replace(/\.\d+\/26$/, (m) => `.${Number(m.slice(1, -3)) + 40}`);
  await ipam.allocate({ handle: 'resv-l-borrow', host: LIVE, ipv4: borrowedIp });
  const [l] = await ipam.allocate({ handle: 'resv-l1', host: LIVE, ipv4: 'auto' });
  await ipam.idle();
  const hosts = new HostStore(ds);
  await hosts.register(DEAD, { ip: '198.18.9.1', as: '64512' });
  await hosts.register(LIVE, { ip: '198.18.9.2' });
  await new BgpConfigStore(ds).addPeer({ host: DEAD }, '198.18.9.254', '64600');
  await ds.put(keys.endpoint(DEAD, '0'.repeat(64), 'e'.repeat(32)), endpointValue(dead[0]!));
  await ds.put(keys.endpoint(DEAD, '1'.repeat(64), 'f'.repeat(32)), endpointValue(dead[1]!));
  await ds.put(keys.endpoint(LIVE, '9'.repeat(64), 'a'.repeat(32)), endpointValue(l!.address));
  // A claim DEAD's node left pending when it died.
  await ds.put(keys.affinity(DEAD, 4, '10.141.0.192/26'), { state: 'pending', since: Date.now() });
  return { dead, borrowed: borrowedIp, live: l!.address };
}

async function liveKeys(): Promise<string[]> {
  return (await snapshot()).filter((k) => k.includes(`/${LIVE}/`) || k.includes('resv-l')).map((k) => k.replace(/@\d+=.*/, ''));
}

test('node remove: refused while the node lives and while it has endpoint records; cut short, finished by the next run; the dead host\'s state goes, the live host\'s stays', async () => {
  const w = await world();
  const liveBefore = await liveKeys();

  // Alive: a node holds the host name under a lease.
  const lease = ds.client.lease(15, { autoKeepAlive: true });
  const leaseId = await lease.grant();
  const me = { id: 'node-1', pid: 4242, machine: 'm1', stateDir: '/var/lib/calico', since: Date.now() };
  assert.deepEqual(await new NodeIdentityStore(ds).claim(DEAD, me, leaseId), { claimed: true });
  let before = await snapshot();
  let r = await ctl('node', 'remove', '--hostname', DEAD, '--remove-endpoints');
  assert.equal(r.code, 1, r.stdout);
  assert.match(
    r.stderr,
    new RegExp(
      `^Host deadh is alive: its node holds the registration lease /calico/v1/host/deadh/node \\(lease ${leaseId}, TTL 15 s, \\d+ s left unless its node renews it; node pid 4242 on machine m1, state dir /var/lib/calico\\)\\. .*Nothing was changed\\.\\n$`,
    ),
  );
  assert.deepEqual(await snapshot(), before, 'a refused removal changes nothing');
  await lease.revoke();

  // Endpoint records and no --remove-endpoints: refused, naming how many.
  before = await snapshot();
  r = await ctl('node', 'remove', '--hostname', DEAD);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /^Host deadh still has 2 endpoint records \(its containers, as every host's policy sees them\): rerun with --remove-endpoints .*Nothing was changed\.\n$/);
  assert.deepEqual(await snapshot(), before);

  // Cut short: the endpoint records went, the block was released, then the
  // process died before removing the claim the dead node had left pending.
  const records = new HostRecords(ds);
  const guard = [{ key: keys.hostNode(DEAD), modRevision: '0' }];
  assert.equal(await records.removeEndpointRecords(DEAD, guard), 2);
  const dying = new Datastore({ endpoints: etcd.endpoints });
  onTeardown('closing dying client', () => dying.close());
  const cas = dying.cas.bind(dying);
  let n = 0;
  dying.cas = (async (...args: Parameters<typeof cas>) => {
    if (/^removing block affinity /.test(args[0]) && ++n === 1) throw new Error('killed');
    return cas(...args);
  }) as typeof dying.cas;
  await assert.rejects(releaseHost(new IpamContext(dying), DEAD, guard), /killed/);

  // The next run finishes (the records are gone, so no --remove-endpoints is needed any more).
  r = await ctl('node', 'remove', '--hostname', DEAD);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Removing host deadh \(no node holds \/calico\/v1\/host\/deadh\/node\): 0 endpoint records, /);
  assert.match(r.stdout, /\n  host keys: 5 removed \(registration, BGP settings and peers\)\nHost deadh removed\.\n$/);

  const ipam = new EtcdIpam(ds);
  for (const a of w.dead) assert.equal(await ipam.lookup(a), undefined, `${a} is free again`);
  assert.equal((await ipam.lookup(w.borrowed))?.handle, 'resv-l-borrow', 'the live host\'s address in the dead host\'s block stays');
  assert.equal((await ipam.lookup(w.live))?.handle, 'resv-l1');
  const blocks = await ds.list(keys.blocksDir(4), json(BlockValue));
  assert.deepEqual(
    blocks.map((b) => [b.value.cidr, b.value.affinity]).sort(),
    [[(await ipam.lookup(w.borrowed))!.block, null], [(await ipam.lookup(w.live))!.block, `host:${LIVE}`]].sort(),
    'the dead host\'s empty blocks are gone; the one holding a borrowed address stays, without an owner',
  );
  assert.deepEqual(await ds.listKeys(keys.affinitiesRoot() + DEAD + '/'), [], 'no affinity of the dead host is left (the pending one included)');
  assert.deepEqual(await ds.listKeys(keys.hostDir(DEAD)), [], 'no key under the dead host');
  assert.deepEqual(await liveKeys(), liveBefore, 'the live host\'s keys are all still there');
  assert.deepEqual((await ipam.audit()).problems, []);
  assert.deepEqual((await new HostStore(ds).list()).map((h) => h.host), [LIVE]);

  // Idempotent.
  before = await snapshot();
  r = await ctl('node', 'remove', '--hostname', DEAD, '--remove-endpoints');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Host deadh is already gone: nothing of it is left in etcd.\n');
  assert.deepEqual(await snapshot(), before);
});

test('node remove: a node that comes back midway stops the removal', async () => {
  await world();
  const back = new Datastore({ endpoints: etcd.endpoints });
  onTeardown('closing client', () => back.close());
  const cas = back.cas.bind(back);
  let n = 0;
  const lease = ds.client.lease(15, { autoKeepAlive: true });
  onTeardown('revoking lease', () => lease.revoke().catch(() => undefined));
  const leaseId = await lease.grant();
  back.cas = (async (...args: Parameters<typeof cas>) => {
    if (/^releasing /.test(args[0]) && ++n === 1) {
      await new NodeIdentityStore(ds).claim(DEAD, { id: 'node-2', pid: 1, machine: 'm', stateDir: '/s', since: Date.now() }, leaseId);
    }
    return cas(...args);
  }) as typeof back.cas;
  await assert.rejects(
    releaseHost(new IpamContext(back), DEAD, [{ key: keys.hostNode(DEAD), modRevision: '0' }]),
    /stopped, \/calico\/v1\/host\/deadh\/node changed meanwhile/,
  );
  const r = await ctl('node', 'remove', '--hostname', DEAD, '--remove-endpoints');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^Host deadh is alive/);
  assert.equal((await ds.listKeys(keys.hostDir(DEAD))).filter((k) => k.endsWith('/bird_ip')).length, 1, 'its registration stays');
});
