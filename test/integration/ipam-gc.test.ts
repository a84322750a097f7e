// IPAM leftovers of dead processes, collected by the reconciler's sweep
// (the real Reconciler against a real dockerd and a real etcd): a process
// killed -9 between the two phases of a block claim leaves a pending
// affinity; a Docker IPAM driver process killed -9 after allocating leaves
// a "docker-" address whose release Docker can never deliver. Both go after
// two sweeps a grace apart; a live container's addresses stay. The node
// level (calicoctl node with its plugin) is the lead's test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import pino from 'pino';
import { EtcdCluster, PrivateDockerd, ensureTestImage, onTeardown, sleep, teardownAll, waitFor } from '../harness';
import { sweeper } from './sweeper';
import { Datastore, PoolStore, keys } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { IpamDriver } from '../../src/plugin/ipam-driver';
import { EndpointRegistry } from '../../src/endpoints/registry';
import { POOL_ID_V4 } from '../../src/names';

const CHILD = process.env.IPAM_GC_TEST_CHILD; // "<mode>,<endpoints...>"
const POOL = '10.123.0.0/24';
const HOST = 'gc-host';
const DEAD_ADDRESS = '10.123.0.77';
const LIVE_ADDRESS = '10.123.0.50';
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

/**
 * Child mode "claim": allocates as host "dead-host" and stops for good after
 * the first phase of the block claim (the pending affinity), to be killed -9.
 * Child mode "driver": the Docker IPAM driver allocates DEAD_ADDRESS for a
 * container, then the process is killed -9 (Docker's release never arrives).
 */
async function childMain(mode: string, endpoints: string[]): Promise<void> {
  setInterval(() => undefined, 1 << 30); // alive until killed, even with nothing left to wait for
  const ds = new Datastore({ endpoints });
  if (mode === 'claim') {
    const cas = ds.cas.bind(ds);
    let calls = 0;
    ds.cas = (async (...args: Parameters<typeof cas>) => {
      if (++calls === 1) {
        const r = await cas(...args);
        process.stdout.write(`pending ${args[0]}\n`);
        return r;
      }
      return new Promise(() => undefined); // never reaches the second phase
    }) as typeof ds.cas;
    await new EtcdIpam(ds).allocate({ handle: 'resv-never', host: 'dead-host', ipv4: 'auto' });
    return;
  }
  const driver = new IpamDriver({ ipam: new EtcdIpam(ds), hostname: HOST, endpoints: new EndpointRegistry(), log });
  const r = await driver.requestAddress({ PoolID: POOL_ID_V4, Address: DEAD_ADDRESS });
  process.stdout.write(`allocated ${r.Address}\n`);
  await new Promise(() => undefined);
}

async function runChildUntil(mode: string, endpoints: string[], marker: RegExp): Promise<string> {
  // Not a test-runner child itself: NODE_TEST_CONTEXT would make it one.
  const { NODE_TEST_CONTEXT: _ctx, ...env } = process.env;
  const child = spawn(process.execPath, [__filename], {
    env: { ...env, IPAM_GC_TEST_CHILD: [mode, ...endpoints].join(',') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onTeardown(`killing gc child ${mode}`, () => void child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  await waitFor(`child ${mode} (stdout ${out}, stderr ${err})`, async () => marker.test(out), 30_000);
  assert.equal(child.exitCode, null, `child ${mode} still running when killed (stderr ${err})`);
  const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_code, signal) => r(signal)));
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  return out;
}

if (CHILD) {
  const [mode, ...endpoints] = CHILD.split(',');
  childMain(mode!, endpoints).catch((e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  });
} else {
  after(teardownAll);
  let etcd: EtcdCluster;
  let d: PrivateDockerd;
  let img: string;
  let ds: Datastore;

  before(async () => {
    [etcd, d] = await Promise.all([EtcdCluster.start({ size: 1 }), PrivateDockerd.start()]);
    img = await ensureTestImage(d);
    ds = new Datastore({ endpoints: etcd.endpoints });
    onTeardown('closing etcd client', () => ds.close());
    onTeardown('containers', async () => {
      const ids = (await d.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
      if (ids.length) await d.docker(['rm', '-f', ...ids]);
    });
  });

  test('a pending claim and a docker- address of processes killed -9 are collected after the grace; a live container\'s addresses are not', async () => {
    await ds.deletePrefix('/calico/');
    await new PoolStore(ds).add(POOL);
    const ipam = new EtcdIpam(ds, { log });

    // Leftovers of dead processes.
    const claimOut = await runChildUntil('claim', etcd.endpoints, /^pending /m);
    assert.match(claimOut, /claiming block 10\.123\.0\.\d+\/26 for dead-host/);
    await runChildUntil('driver', etcd.endpoints, /^allocated 10\.123\.0\.77\/32$/m);
    const pending = await ipam.listStaleAffinities();
    assert.deepEqual(pending.map((a) => [a.host, a.state, a.reason]), [['dead-host', 'pending', 'pending']]);
    const dead = (await ipam.lookup(DEAD_ADDRESS))!;
    assert.ok(dead?.handle.startsWith('docker-'), `the driver's handle holds ${DEAD_ADDRESS}: ${dead?.handle}`);

    // A live container that holds its addresses: one through the proxy
    // (resv-, naming the container), one through the driver (docker-,
    // held as dockerd shows it on the container's network).
    const netName = `gcnet${process.pid}`;
    assert.equal((await d.docker(['network', 'create', '--subnet', POOL, netName])).code, 0);
    const run = await d.docker(['run', '-d', '--net', netName, '--ip', LIVE_ADDRESS, img, 'sleep', '600']);
    assert.equal(run.code, 0, run.stderr);
    const live = run.stdout.trim();
    const liveDriver = new IpamDriver({ ipam, hostname: HOST, endpoints: new EndpointRegistry(), log });
    await liveDriver.requestAddress({ PoolID: POOL_ID_V4, Address: LIVE_ADDRESS });
    const liveHandle = (await ipam.lookup(LIVE_ADDRESS))!.handle;
    const [viaProxy] = await ipam.allocate({ handle: 'resv-live', host: HOST, ipv4: 'auto', attrs: { container: live } });

    const grace = 1500;
    const reconciler = sweeper({ ds, ipam, dockerSocket: d.socket, host: HOST, log, gcGraceMs: grace });

    const first = await reconciler.sweep();
    assert.ok(first, 'dockerd answered');
    assert.deepEqual(first.release, [], 'first sighting: nothing collected yet');
    assert.deepEqual(first.settleAffinities, []);
    assert.equal((await ipam.listStaleAffinities()).length, 1);
    assert.equal((await ipam.lookup(DEAD_ADDRESS))?.handle, dead.handle);

    await sleep(grace + 100);
    const second = await reconciler.sweep();
    assert.deepEqual(second!.release.map((r) => r.handle), [dead.handle]);
    assert.match(second!.release[0]!.reason, /^Docker-driver address 10\.123\.0\.77 held by no container for \d+ s$/);
    assert.deepEqual(second!.settleAffinities.map((s) => s.affinity.host), ['dead-host']);

    assert.equal(await ipam.lookup(DEAD_ADDRESS), undefined, 'the dead driver\'s address is free');
    assert.deepEqual(await ipam.listStaleAffinities(), [], 'the dead claim is withdrawn');
    assert.equal((await ds.listKeys(keys.affinitiesRoot())).filter((k) => k.includes('/dead-host/')).length, 0);
    assert.equal((await ipam.lookup(LIVE_ADDRESS))?.handle, liveHandle, 'the live container\'s docker- address stays');
    assert.equal((await ipam.lookup(viaProxy!.address))?.handle, 'resv-live', 'its reservation stays');
    const report = await ipam.audit();
    assert.deepEqual(report.problems, []);
    assert.equal(report.allocations, 2);
    assert.equal(report.pendingAffinities, 0);

    // A third sweep finds nothing more; the live container's addresses still stand.
    await sleep(grace + 100);
    const third = await reconciler.sweep();
    assert.deepEqual(third!.release, []);
    assert.deepEqual(third!.settleAffinities, []);
    assert.equal((await ipam.audit()).allocations, 2);
    // Once the container is gone its driver address goes too (two sightings later).
    assert.equal((await d.docker(['rm', '-f', live])).code, 0);
    const removed = await reconciler.sweep();
    assert.deepEqual(removed!.release.map((r) => r.handle), ['resv-live'], 'the reservation naming it at once');
    await sleep(grace + 100);
    const gone = await reconciler.sweep();
    assert.deepEqual(gone!.release.map((r) => r.handle), [liveHandle]);
    assert.equal((await ipam.audit()).allocations, 0);
    await ipam.idle();
  });
}
