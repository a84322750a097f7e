// Policy and the node's life: what someone else flushes is repaired within
// 10 s and nothing that is not ours is touched; a restart of the node drops
// no established connection and keeps filtering; a stopped node leaves the
// rules in place; `calicoctl node stop --force` removes them; `calicoctl
// status` shows the policy component.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { teardownAll, isRoot, Netns, vethLink, addRoute, waitFor, CALICOCTL_MAIN } from '../harness';
import { CalicoLab } from './calico-lab';
import { probe, putRules, removeContainers, StreamResult } from './calico-policy-lab';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd, iptables)';

let lab: CalicoLab;
let lan: Netns;
/** Rules, a chain and a set that are not ours: nothing we do may change them. */
const FOREIGN_RULE = '-A FORWARD -s 203.0.113.7/32 -j ACCEPT';
const FOREIGN_CHAIN = ['-N OPS-AUDIT', '-A OPS-AUDIT -s 203.0.113.8/32 -j RETURN'];

before(async () => {
  if (skip) return;
  lab = await CalicoLab.start({ pools: ['10.69.0.0/16'] });
  lan = await Netns.create('cdtplan');
  await vethLink({ side: lab.ns, ifName: 'lan0', addr: '192.0.2.1/24' }, { side: lan, ifName: 'eth0', addr: '192.0.2.2/24' });
  await addRoute(lan, '10.69.0.0/16', '192.0.2.1');
  await lab.ns.ok('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  await lab.ns.ok('iptables', ['-w', ...FOREIGN_RULE.split(' ')]);
  for (const r of FOREIGN_CHAIN) await lab.ns.ok('iptables', ['-w', ...r.split(' ')]);
  await lab.ns.ok('ipset', ['create', 'ops-allow', 'hash:ip']);
  await lab.ns.ok('ipset', ['add', 'ops-allow', '203.0.113.7']);
  await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.69.1.1', '--name', 'c1', lab.image, 'sleep', '1d']);
  await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.69.1.2', '--name', 'c2', lab.image, 'sleep', '1d']);
  // The server of the restart test: only tcp 8080 from the LAN is let in.
  await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.69.1.3', '-e', 'CALICO_PROFILE=SRV', '--name', 'srv', lab.image, 'sh', '-c', 'nc -ll -p 8080 -e cat']);
  await putRules(lab, 'SRV', [{ action: 'allow', protocol: 'tcp', dst_ports: [8080], src_net: '192.0.2.0/24' }]);
});

/** docker exec on dockerd's own socket: it works while the node (and its proxy) is down. */
async function ping(from: string, to: string): Promise<boolean> {
  return (await lab.direct(['exec', from, 'ping', '-c', '1', '-W', '1', to])).code === 0;
}

async function lanPing(to: string): Promise<boolean> {
  return (await lan.exec('busybox', ['ping', '-c', '1', '-W', '1', to])).code === 0;
}

/** Our chains (cali-*) in the IPv4 filter table, name -> rules as iptables -S prints them. */
async function ourChains(): Promise<Map<string, string[]>> {
  const out = (await lab.ns.ok('iptables-save', ['-t', 'filter'])).stdout;
  const m = new Map<string, string[]>();
  for (const l of out.split('\n')) {
    const decl = /^:(cali-\S+)/.exec(l);
    if (decl) m.set(decl[1]!, []);
    const rule = /^-A (cali-\S+) /.exec(l);
    if (rule) m.get(rule[1]!)!.push(l);
  }
  return m;
}

async function foreignIntact(): Promise<void> {
  const s = (await lab.ns.ok('iptables', ['-w', '-S'])).stdout;
  assert.ok(s.includes(FOREIGN_RULE), 'the foreign FORWARD rule is still there');
  for (const r of FOREIGN_CHAIN) assert.ok(s.includes(r), `the foreign chain is intact: ${r}`);
  assert.match(s, /^-N DOCKER$/m, "Docker's chains are still there");
  assert.match((await lab.ns.ok('ipset', ['list', 'ops-allow'])).stdout, /203\.0\.113\.7/, 'the foreign ipset keeps its member');
}

test('iptables -F of every chain of ours and ipset flush of a tag set are repaired within 10 s; foreign rules untouched', { skip }, async () => {
  await waitFor('c1 reaches c2', () => ping('c1', '10.69.1.2'), 5000, 100);
  const want = await ourChains();
  assert.ok(want.size > 8, `our chains are programmed (${[...want.keys()].join(' ')})`);

  let t = Date.now();
  for (const c of want.keys()) await lab.ns.ok('iptables', ['-w', '-F', c]);
  await waitFor('every chain of ours back as it was', async () => JSON.stringify([...(await ourChains())]) === JSON.stringify([...want]), 10000, 100);
  const chainsMs = Date.now() - t;
  assert.equal(await ping('c1', '10.69.1.2'), true, 'traffic works again');

  // The kernel refuses to destroy a set that a rule refers to: what an operator can do is empty it.
  const set = 'cali4-tag-calico:default';
  const destroy = await lab.ns.exec('ipset', ['destroy', set]);
  assert.notEqual(destroy.code, 0, 'ipset destroy of a referenced set is refused by the kernel');
  // Sorted: a refilled hash set lists its members in another order.
  const membersOf = async () => (await lab.ns.ok('ipset', ['list', set])).stdout.split('Members:')[1]!.trim().split('\n').filter(Boolean).sort().join(' ');
  const members = await membersOf();
  assert.ok(members.length > 0, 'the default profile\'s tag set has members');
  t = Date.now();
  await lab.ns.ok('ipset', ['flush', set]);
  await waitFor('the tag set refilled', async () => (await membersOf()) === members, 10000, 100);
  const setMs = Date.now() - t;
  assert.equal(await ping('c1', '10.69.1.2'), true, 'the group reaches itself again');

  // Our hook taken out of FORWARD: put back at the top, the foreign rule after it.
  t = Date.now();
  await lab.ns.ok('iptables', ['-w', '-D', 'FORWARD', '-j', 'cali-FORWARD']);
  await waitFor('the FORWARD hook back at the top', async () => (await lab.ns.ok('iptables', ['-w', '-S', 'FORWARD'])).stdout.split('\n')[1] === '-A FORWARD -j cali-FORWARD', 10000, 100);
  const hookMs = Date.now() - t;
  console.log(`# repaired: every chain flushed ${chainsMs} ms, tag set flushed ${setMs} ms, FORWARD hook deleted ${hookMs} ms (destroy refused: ${destroy.stderr.trim()})`);
  await foreignIntact();
});

test('calicoctl status shows the policy component', { skip }, async () => {
  await new Promise((r) => setTimeout(r, 2500)); // one status-file write after the repairs
  const r = await lab.calicoctl(['status', '--state-dir', lab.dir, '--hostname', lab.hostname, '--plugin-name', lab.pluginName]);
  assert.match(r.stdout, /^Policy: 3 endpoints programmed, \d+ profiles; last apply \d{4}-\d\d-\d\dT[\d:.]+Z \([\d.]+ ms\); last error: none$/m, r.stdout);
  const j = await lab.calicoctl(['status', '--state-dir', lab.dir, '--hostname', lab.hostname, '--plugin-name', lab.pluginName, '--output', 'json']);
  const policy = JSON.parse(j.stdout).policy;
  assert.equal(policy.endpoints, 3);
  assert.equal(policy.stale, false);
  assert.ok(policy.profiles >= 2 && Date.parse(policy.lastApplyAt) > Date.now() - 60000, JSON.stringify(policy));
  console.log(`# ${r.stdout.split('\n').find((l) => l.startsWith('Policy'))}`);
});

test('a node restart drops no established connection and keeps filtering; a stopped node leaves the rules in place', { skip }, async () => {
  const stream = probe<StreamResult>(lan, ['stream', '10.69.1.3', '8080', '20000']);
  await stream.ready;
  assert.equal(await lanPing('10.69.1.3'), false, 'ping from the LAN is denied (SRV lets in tcp 8080 only)');
  const rules = await ourChains();
  await lab.stopNode();
  const stoppedAt = Date.now();
  assert.deepEqual(await ourChains(), rules, 'a stopped node leaves every chain in place');
  assert.equal(await lanPing('10.69.1.3'), false, 'still denied while the node is down');
  assert.equal(await ping('c1', '10.69.1.2'), true, 'running containers keep working while the node is down');
  assert.equal(await ping('c1', '10.69.1.3'), false, 'and keep being filtered');
  await new Promise((r) => setTimeout(r, 1000));
  await lab.startNode();
  const restartedMs = Date.now() - stoppedAt;
  assert.equal(await lanPing('10.69.1.3'), false, 'still denied after the restart');
  assert.equal((await probe<{ tries: number }>(lan, ['connect', '10.69.1.3', '8080', 'open']).result).tries, 1, 'a new allowed connection works at once');
  const s = await stream.result;
  console.log(`# node down ${restartedMs} ms: the stream echoed ${s.echoes} times, longest gap ${s.maxGapMs} ms, closed ${s.closed}`);
  assert.equal(s.closed, false, `the established connection survived the restart (${s.error ?? ''})`);
  assert.ok(s.maxGapMs < 1000, `no stall across the restart (longest gap ${s.maxGapMs} ms)`);
  assert.ok(s.echoes > 500, `echoes all along (${s.echoes})`);
  assert.deepEqual(await ourChains(), rules, 're-adopted as it was');
  await foreignIntact();
});

test('calicoctl node stop --force removes every chain, hook and set of ours and nothing else', { skip }, async () => {
  // The real `calicoctl node` (pid file in the state dir) in place of the lab's node process.
  await lab.stopNode();
  const node = lab.spawnCalicoctlNode();
  await node.ready();
  assert.equal(node.child.exitCode, null, node.log());
  const r = await lab.ns.exec(process.execPath, [CALICOCTL_MAIN, '--etcd-endpoints', 'http://127.0.0.1:2379', 'node', 'stop', '--force', '--state-dir', lab.dir, '--hostname', lab.hostname], { timeoutMs: 30000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Removed the node's iptables chains and ipsets/);
  await node.exited;
  assert.deepEqual([...(await ourChains()).keys()], [], 'no chain of ours is left');
  for (const b of ['FORWARD', 'INPUT', 'OUTPUT']) assert.doesNotMatch((await lab.ns.ok('iptables', ['-w', '-S', b])).stdout, /cali-/, `no hook in ${b}`);
  assert.doesNotMatch((await lab.ns.ok('ipset', ['list', '-n'])).stdout, /^cali/m, 'no ipset of ours is left');
  assert.doesNotMatch((await lab.ns.ok('ip6tables-save', ['-t', 'filter'])).stdout, /cali-/, 'nor in IPv6');
  await foreignIntact();
  await removeContainers(lab, ['c1', 'c2', 'srv']);
});
