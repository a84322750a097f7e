// NAT outgoing on a real kernel, inside namespaces this test makes:
//   W (workload, 10.123.0.5) -- H (host, runs NatOutgoing) -- O (outside, 198.51.100.2, 10.124.0.9)
// O has no route back to the pools, so W reaches O only when H masquerades.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Netns, vethLink, addRoute, teardownAll, onTeardown, waitFor, isRoot } from '../harness';
import { IptablesApplier } from '../../src/dataplane/applier/iptables-applier';
import { NatOutgoing } from '../../src/dataplane/nat-outgoing/nat-outgoing';
import { NatPool } from '../../src/dataplane/nat-outgoing/render';
import { natOutgoingChain } from '../../src/names/kernel';
import { silentLogger } from '../../src/log/logger';

after(teardownAll);

async function reaches(w: Netns, dst: string): Promise<boolean> {
  const r = await w.exec('busybox', ['ping', '-c', '1', '-W', '1', dst]);
  return r.code === 0;
}

test('NAT outgoing: pool traffic to outside every pool is masqueraded, only while the flag is on', { skip: !isRoot() }, async () => {
  const [w, h, o] = [await Netns.create('cdtw'), await Netns.create('cdth'), await Netns.create('cdto')];
  await h.forwarding();
  await vethLink({ side: w, ifName: 'eth0', addr: '10.123.0.5/24' }, { side: h, ifName: 'wl0', addr: '10.123.0.1/24' });
  await vethLink({ side: h, ifName: 'up0', addr: '198.51.100.1/24' }, { side: o, ifName: 'eth0', addr: '198.51.100.2/24' });
  await o.ok('ip', ['addr', 'add', '10.124.0.9/32', 'dev', 'eth0']);
  await addRoute(w, 'default', '10.123.0.1');
  await addRoute(h, '10.124.0.9/32', '198.51.100.2');

  let pools: NatPool[] = [
    { cidr: '10.123.0.0/24', natOutgoing: true },
    { cidr: '10.124.0.0/24', natOutgoing: false },
  ];
  const chain = natOutgoingChain();
  const applier = new IptablesApplier({ netns: h.name, log: silentLogger() });
  const nat = new NatOutgoing({ applier, log: silentLogger() });
  onTeardown('kernel applier', () => applier.stop());

  assert.equal(await reaches(w, '198.51.100.2'), false, 'without NAT, O cannot answer a pool address');
  await applier.start();
  await nat.start();
  nat.setPools(pools);
  await applier.flush();
  assert.equal(await reaches(w, '198.51.100.2'), true, 'masqueraded to the outside');
  assert.equal(await reaches(w, '10.124.0.9'), false, 'traffic to another pool keeps its source');
  const saved = await h.ok('iptables-save', ['-t', 'nat']);
  assert.match(saved.stdout, new RegExp(`-A POSTROUTING -j ${chain}`));

  // The flag goes: the rule goes (applied soon after, without a flush).
  pools = [{ cidr: '10.123.0.0/24', natOutgoing: false }, pools[1]];
  nat.setPools(pools);
  await waitFor('masquerade rule removed', async () => !(await h.ok('iptables-save', ['-t', 'nat'])).stdout.includes('MASQUERADE'), 5000);
  assert.equal(await reaches(w, '198.51.100.2'), false);

  // Back on, then the pool itself goes.
  pools = [{ cidr: '10.123.0.0/24', natOutgoing: true }];
  nat.setPools(pools);
  await applier.flush();
  assert.equal(await reaches(w, '198.51.100.2'), true);
  pools = [];
  nat.setPools(pools);
  await applier.flush();
  assert.equal(await reaches(w, '198.51.100.2'), false);

  // Stopping the node leaves the rules: running containers keep their NAT.
  pools = [{ cidr: '10.123.0.0/24', natOutgoing: true }];
  nat.setPools(pools);
  await applier.flush();
  await nat.stop();
  await applier.stop();
  assert.match((await h.ok('iptables-save', ['-t', 'nat'])).stdout, new RegExp(`-A POSTROUTING -j ${chain}`));
  assert.equal(await reaches(w, '198.51.100.2'), true, 'still masqueraded after stop');

  // removeAll (calicoctl node stop --force) removes everything it made in H.
  await applier.removeAll();
  const after = await h.ok('iptables-save', ['-t', 'nat']);
  assert.doesNotMatch(after.stdout, new RegExp(chain));
  const sets = await h.ok('ipset', ['list', '-n']);
  assert.equal(sets.stdout.trim(), '');
});

test('NAT outgoing: a host whose pools never ask for it is left untouched', { skip: !isRoot() }, async () => {
  const h = await Netns.create('cdth');
  const applier = new IptablesApplier({ netns: h.name, log: silentLogger() });
  const nat = new NatOutgoing({ applier, log: silentLogger() });
  onTeardown('kernel applier', () => applier.stop());
  await applier.start();
  await nat.start();
  nat.setPools([{ cidr: '10.125.0.0/24', natOutgoing: false }, { cidr: 'fd7d::/64', natOutgoing: false }]);
  await applier.flush();
  assert.doesNotMatch((await h.ok('iptables-save', ['-t', 'nat'])).stdout, new RegExp(natOutgoingChain()));
  assert.doesNotMatch((await h.ok('ip6tables-save', ['-t', 'nat'])).stdout, new RegExp(natOutgoingChain()));
  assert.equal((await h.ok('ipset', ['list', '-n'])).stdout.trim(), '');
});
