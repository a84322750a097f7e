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

/** Packets O's INPUT counted from `src` (a counting rule per source, added by the test). */
async function seenFrom(o: Netns, src: string): Promise<number> {
  const out = (await o.ok('iptables', ['-w', '-L', 'INPUT', '-v', '-x', '-n'])).stdout;
  // Columns: pkts bytes target prot opt in out source destination (icmp prints as its number, 1).
  const line = out.split('\n').find((l) => l.trim().split(/\s+/)[6] === src);
  return line ? Number(line.trim().split(/\s+/)[0]) : 0;
}

test('NAT outgoing with nested pools: a narrow pool without the flag inside a wide one with it leaves with its own address', { skip: !isRoot() }, async () => {
  //   W1 (10.123.1.5, inner pool 10.123.1.0/24, no flag) --+
  //                                                         H -- O (198.51.100.2, routes the pools back via H)
  //   W2 (10.123.7.5, outer pool 10.123.0.0/16, flag)    --+
  const [w1, w2, h, o] = [await Netns.create('cdtw'), await Netns.create('cdtw'), await Netns.create('cdth'), await Netns.create('cdto')];
  await h.forwarding();
  await vethLink({ side: w1, ifName: 'eth0', addr: '10.123.1.5/24' }, { side: h, ifName: 'wl1', addr: '10.123.1.1/24' });
  await vethLink({ side: w2, ifName: 'eth0', addr: '10.123.7.5/24' }, { side: h, ifName: 'wl2', addr: '10.123.7.1/24' });
  await vethLink({ side: h, ifName: 'up0', addr: '198.51.100.1/24' }, { side: o, ifName: 'eth0', addr: '198.51.100.2/24' });
  await addRoute(w1, 'default', '10.123.1.1');
  await addRoute(w2, 'default', '10.123.7.1');
  // O can answer pool addresses too: what tells masqueraded from not is the source O sees.
  await addRoute(o, '10.123.0.0/16', '198.51.100.1');
  for (const src of ['198.51.100.1', '10.123.1.5', '10.123.7.5']) await o.ok('iptables', ['-w', '-A', 'INPUT', '-s', src, '-p', 'icmp']);

  const applier = new IptablesApplier({ netns: h.name, log: silentLogger() });
  const nat = new NatOutgoing({ applier, log: silentLogger() });
  onTeardown('kernel applier', () => applier.stop());
  await applier.start();
  await nat.start();
  nat.setPools([
    { cidr: '10.123.0.0/16', natOutgoing: true },
    { cidr: '10.123.1.0/24', natOutgoing: false },
  ]);
  await applier.flush();

  assert.equal(await reaches(w2, '198.51.100.2'), true, 'the outer pool reaches O');
  assert.equal(await seenFrom(o, '198.51.100.1'), 1, "the outer pool's ping arrived masqueraded (from H's address)");
  assert.equal(await seenFrom(o, '10.123.7.5'), 0);
  assert.equal(await reaches(w1, '198.51.100.2'), true, 'the inner pool reaches O');
  assert.equal(await seenFrom(o, '10.123.1.5'), 1, "the inner pool's ping arrived with its own address");
  assert.equal(await seenFrom(o, '198.51.100.1'), 1, 'and was not masqueraded');
  const set = (await h.ok('ipset', ['list', 'cali40masq-ipam-pools'])).stdout;
  assert.match(set, /^10\.123\.1\.0\/24 nomatch$/m, `the inner pool is an exception in the kernel's set:\n${set}`);

  // The flag moves to the inner pool only: the outer pool keeps its source, the inner one is masqueraded.
  nat.setPools([
    { cidr: '10.123.0.0/16', natOutgoing: false },
    { cidr: '10.123.1.0/24', natOutgoing: true },
  ]);
  await applier.flush();
  assert.equal(await reaches(w1, '198.51.100.2'), true);
  assert.equal(await seenFrom(o, '198.51.100.1'), 2, 'the inner pool is masqueraded now');
  assert.equal(await reaches(w2, '198.51.100.2'), true);
  assert.equal(await seenFrom(o, '10.123.7.5'), 1, 'the outer pool keeps its own address');
  await applier.removeAll();
});
