// Policy in the kernel on a stock dockerd (iptables on, FORWARD policy DROP):
// the blog post's profile steps on one host, a LAN that is let in by a rule
// update, first-instruction pings that meet their policy, anti-spoofing,
// repair of what someone else flushed, IPv6.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CALICOCTL_MAIN, teardownAll, isRoot, Netns, vethLink, addRoute, makeRunDir, onTeardown, removeTree, waitFor } from '../harness';
import { CalicoLab } from './calico-lab';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd, iptables)';

const POOL4 = '10.67.0.0/16';
const POOL6 = 'fd67::/64';
let lab: CalicoLab;
let lan: Netns;

/** The blog post's prof_group1.json (the seed shows it with its values; these are them). */
const PROF_GROUP1 = `{
  "id": "PROF_GROUP1",
  "inbound_rules": [
      {
      "action": "allow",
      "src_tag": "PROF_GROUP1"
      },
      {
      "action": "allow"
      }
  ],
  "outbound_rules": [
      {
      "action": "allow"
      }
  ]
}
`;

before(async () => {
  if (skip) return;
  lab = await CalicoLab.start({ pools: [POOL4, POOL6] });
  // A LAN host with a static route to the pool via the host (the blog post's first routing step).
  lan = await Netns.create('cdtplan');
  await vethLink({ side: lab.ns, ifName: 'lan0', addr: '192.0.2.1/24' }, { side: lan, ifName: 'eth0', addr: '192.0.2.2/24' });
  await addRoute(lan, POOL4, '192.0.2.1');
  await lab.ns.ok('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
});

async function ping(from: string, to: string): Promise<boolean> {
  return (await lab.docker(['exec', from, 'ping', '-c', '1', '-W', '1', to])).code === 0;
}

async function lanPing(to: string): Promise<boolean> {
  return (await lan.exec('busybox', ['ping', '-c', '1', '-W', '1', to])).code === 0;
}

test('the blog post\'s profile steps: member add, the group pings, others are out, rule update lets the LAN in', { skip }, async () => {
  const policy = (await lab.ns.ok('iptables', ['-S', 'FORWARD'])).stdout;
  assert.match(policy, /^-P FORWARD DROP/m, 'a stock dockerd: FORWARD policy DROP');
  await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.89.1', '--name', 'group1-node1', lab.image, 'sleep', '1d']);
  await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.89.2', '--name', 'group1-node2', lab.image, 'sleep', '1d']);
  await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.89.3', '--name', 'outsider', lab.image, 'sleep', '1d']);

  const add1 = await lab.calicoctl(['profile', 'PROF_GROUP1', 'member', 'add', 'group1-node1', '--docker', `unix://${lab.dockerd.socket}`, '--hostname', lab.hostname]);
  assert.equal(add1.code, 0, add1.stderr);
  assert.match(add1.stdout, /Added group1-node1 to PROF_GROUP1/);
  const add2 = await lab.calicoctl(['profile', 'PROF_GROUP1', 'member', 'add', 'group1-node2', '--docker', `unix://${lab.dockerd.socket}`, '--hostname', lab.hostname]);
  assert.equal(add2.code, 0, add2.stderr);
  assert.match(add2.stdout, /Added group1-node2 to PROF_GROUP1/);

  await waitFor('the group pings', () => ping('group1-node1', '10.67.89.2'), 5000, 100);
  assert.equal(await ping('group1-node2', '10.67.89.1'), true);
  assert.equal(await ping('outsider', '10.67.89.1'), false, 'a container outside the group cannot reach it');
  assert.equal(await ping('group1-node1', '10.67.89.3'), false, 'the group cannot reach it either');
  assert.equal(await lanPing('10.67.89.1'), false, 'the LAN is out before the rule update');

  const dir = await makeRunDir('policy');
  onTeardown(`remove ${dir}`, () => removeTree(dir));
  const file = path.join(dir, 'prof_group1.json');
  fs.writeFileSync(file, PROF_GROUP1);
  const upd = await lab.ns.exec('sh', ['-c', `${process.execPath} ${CALICOCTL_MAIN} --etcd-endpoints http://127.0.0.1:2379 profile PROF_GROUP1 rule update < ${file}`]);
  assert.equal(upd.code, 0, upd.stderr);
  const started = Date.now();
  await waitFor('the LAN reaches group1-node1', () => lanPing('10.67.89.1'), 5000, 50);
  const ms = Date.now() - started;
  assert.equal(await lanPing('10.67.89.2'), true, 'and group1-node2');
  assert.equal(await lanPing('10.67.89.3'), false, 'but not the outsider');
  console.log(`# rule update to the LAN's first successful ping: ${ms} ms`);
  for (const c of ['group1-node1', 'group1-node2', 'outsider']) await lab.docker(['rm', '-f', c]);
  await lab.waitClean();
});
