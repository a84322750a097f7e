// The node's BGP component on real etcd and a real BIRD (in a namespace):
// BIRD waits for the host's registration, then runs the config rendered from
// the syncer; a block claimed for this host is announced after the next
// endpoint change of the host (no waiting for the backstop re-read); a
// datastore change BIRD refuses (a link-local peer without an interface) is
// not loaded, the old config keeps running, and `calicoctl status` shows the
// refusal until a good config replaces it; stop is graceful.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import pino from 'pino';
import { EtcdCluster, Netns, isRoot, makeRunDir, onTeardown, removeTree, teardownAll, waitFor } from '../harness';
import { BgpComponent, readAffineBlocks } from '../../src/bgp/component';
import { BirdSupervisor } from '../../src/bgp/bird';
import { readBgpStatus } from '../../src/cli/commands/status';
import { BgpConfigStore, Datastore, EndpointStore, HostStore, PoolStore, keys } from '../../src/datastore';
import { Syncer } from '../../src/syncer';

after(teardownAll);
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

test('BGP component: waits for registration, follows blocks and peers, refuses a bad config, stops gracefully', { skip: !isRoot() }, async () => {
  const etcd = await EtcdCluster.start({ size: 1 });
  const ds = new Datastore({ endpoints: etcd.endpoints });
  onTeardown('datastore', () => ds.close());
  const ns = await Netns.create('cdbc');
  await ns.ok('ip', ['addr', 'add', '10.97.0.1/32', 'dev', 'lo']);
  await ns.ok('ip', ['-6', 'addr', 'add', 'fd97::1/128', 'dev', 'lo']);
  const stateDir = await makeRunDir('bgp-component');
  onTeardown(`removing ${stateDir}`, () => removeTree(stateDir));
  await new PoolStore(ds).add('10.202.0.0/16');

  const syncer = new Syncer(ds, log);
  await syncer.start();
  onTeardown('syncer', () => syncer.stop());
  const supervisor = new BirdSupervisor({ stateDir, log, wrap: ['nsenter', `--net=${ns.path}`] });
  onTeardown('bird', () => supervisor.stop({ graceful: false }));
  const bgp = new BgpComponent({ hostname: 'comphost', stateDir, datastore: ds, syncer, log, supervisor, refreshMs: 60_000 });
  await bgp.start();
  onTeardown('bgp component', () => bgp.stop());
  assert.equal(supervisor.status().running, false, 'no BIRD before the host is registered');

  await new HostStore(ds).register('comphost', { ip: '10.97.0.1', ip6: 'fd97::1' });
  await waitFor('BIRD started on registration', async () => supervisor.status().running, 10_000, 50);
  assert.match(fs.readFileSync(supervisor.paths.config, 'utf8'), /^router id 10\.97\.0\.1;$/m);

  // A block claimed for this host, then an endpoint of the host written (what Join does).
  await ds.put(keys.affinity('comphost', 4, '10.202.0.64/26'), { state: 'confirmed', since: Date.now() });
  await ds.put(keys.affinity('comphost', 4, '10.202.0.128/26'), { state: 'pending', since: Date.now() });
  assert.deepEqual(await readAffineBlocks(ds, 'comphost'), ['10.202.0.64/26'], 'a pending claim owns nothing yet');
  const t0 = Date.now();
  await new EndpointStore(ds).put({
    host: 'comphost', containerId: 'c'.repeat(64), endpointId: 'e'.repeat(32), state: 'active', name: 'calieeeeeeeeeee', mac: '02:00:00:00:00:01',
    'container:if_name': 'eth0', profile_ids: [], ipv4_nets: ['10.202.0.65/32'], ipv6_nets: [],
  });
  await waitFor('the block announced', async () => /route 10\.202\.0\.64\/26 blackhole;/.test(fs.readFileSync(supervisor.paths.config, 'utf8')), 3000, 20);
  const ms = Date.now() - t0;
  const shown = await supervisor.birdcCommand(['show', 'route', '10.202.0.64/26']);
  assert.match(shown.out, /10\.202\.0\.64\/26\s+blackhole/, shown.out);
  assert.ok(ms < 2000, `${ms} ms`);

  // A peer BIRD refuses: IPv6 link-local without an interface.
  const pid = supervisor.status().pid;
  const good = fs.readFileSync(supervisor.paths.config, 'utf8');
  await new BgpConfigStore(ds).addPeer({ host: 'comphost' }, 'fe80::1', '64600');
  await waitFor('the refusal recorded', async () => fs.existsSync(supervisor.paths.configError), 3000, 20);
  const st = await readBgpStatus(stateDir);
  assert.equal(st.running, true);
  assert.match(st.configError ?? '', /BIRD refused the new config \(not loaded; the previous one keeps running\)/);
  assert.equal(fs.readFileSync(supervisor.paths.config, 'utf8'), good, 'the running config stays');
  assert.equal(supervisor.status().pid, pid);
  await new BgpConfigStore(ds).removePeer({ host: 'comphost' }, 'fe80::1');
  await waitFor('the refusal cleared', async () => !fs.existsSync(supervisor.paths.configError), 3000, 20);

  // Graceful stop: BIRD goes, its kernel routes (the block's blackhole) stay.
  await bgp.stop();
  assert.equal(supervisor.status().running, false);
  assert.match((await ns.ok('ip', ['route', 'show', 'type', 'blackhole'])).stdout, /10\.202\.0\.64\/26/);
});
