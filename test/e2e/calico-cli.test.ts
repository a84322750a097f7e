// calicoctl shownodes/status/container against a lab host, and a node restart
// that adopts running containers without disturbing them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { teardownAll, isRoot } from '../harness';
import { CalicoLab } from './calico-lab';

after(teardownAll);

let lab: CalicoLab;

before(async () => {
  if (!isRoot()) return;
  lab = await CalicoLab.start({ pools: ['10.69.0.0/16'], gcGraceMs: 3000, sweepIntervalMs: 1500 });
});

const addrOf = async (id: string) => (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', id])).trim();

test('shownodes [--detailed] and status show the host and its workloads', { skip: !isRoot() }, async () => {
  const id = (await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '-e', 'CALICO_PROFILE=web', lab.image, 'sleep', '1d'])).trim();
  const addr = await addrOf(id);
  const summary = await lab.calicoctl(['shownodes'], true);
  assert.match(summary.stdout, /\| labhost +\| docker +\| 1 +\|/);
  const detailed = await lab.calicoctl(['shownodes', '--detailed'], true);
  assert.match(detailed.stdout, /Host +\| Workload Type \| Workload ID +\| Endpoint ID +\| +Addresses +\| +MAC +\| State +\|/);
  assert.match(detailed.stdout, new RegExp(`\\| labhost \\| docker +\\| ${id.slice(0, 12)} \\| [0-9a-f]{12} \\| ${addr.replace(/\./g, '\\.')}/32 \\| [0-9a-f:]{17} \\| active \\|`));
  const json = JSON.parse((await lab.calicoctl(['shownodes', '--detailed', '--output', 'json'], true)).stdout);
  assert.equal(json[0].workloadId, id);
  assert.deepEqual(json[0].addresses, [`${addr}/32`]);
  // No --hostname: the running node's name (labhost, not this machine's) comes from its state directory.
  const st = await lab.calicoctl(['status', '--plugin-name', lab.pluginName, '--state-dir', lab.dir]);
  assert.equal(st.code, 0, st.stdout + st.stderr);
  assert.match(st.stderr, /Using host name labhost: the name of the node on this machine/);
  assert.match(st.stdout, /calico node is running/);
  assert.match(st.stdout, new RegExp(`Docker plugin "${lab.pluginName}": listening on`));
  assert.match(st.stdout, /etcd: reachable at http:\/\/127\.0\.0\.1:2379/);
  assert.match(st.stdout, /Host labhost: registered; 1 workload, 1 endpoint/);
  await lab.dockerOk(['rm', '-f', id]);
  await lab.waitClean();
  const after = await lab.calicoctl(['shownodes'], true);
  assert.match(after.stdout, /\| labhost +\| N\/A +\| 0 +\|/);
});

test('container add/remove network a container started without the proxy', { skip: !isRoot() }, async () => {
  await lab.direct(['network', 'create', 'plain']);
  const id = (await lab.direct(['run', '-d', '--name', 'noproxy', '--net', 'plain', lab.image, 'sleep', '1d'])).stdout.trim();
  const add = await lab.calicoctl(['container', 'add', 'noproxy', '10.69.9.9', '--docker', lab.dockerd.host, '--state-dir', lab.dir]);
  assert.equal(add.code, 0, add.stderr);
  assert.equal(add.stdout, 'IP 10.69.9.9 added to noproxy\n');
  const inside = await lab.direct(['exec', id, 'ip', '-4', 'addr']);
  assert.match(inside.stdout, /inet 10\.69\.9\.9\/32/);
  const ping = await lab.ns.exec('busybox', ['ping', '-c', '1', '-W', '2', '10.69.9.9']);
  assert.equal(ping.code, 0, ping.stdout);
  let s = await lab.state();
  assert.deepEqual(s.allocations.map((a) => a.address), ['10.69.9.9']);
  assert.equal(s.endpoints.filter((e) => e.containerId === id).length, 1);
  const again = await lab.calicoctl(['container', 'add', 'noproxy', 'auto', '--docker', lab.dockerd.host, '--state-dir', lab.dir]);
  // Already so: exit 0 (docs/calicoctl.md, exit codes).
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /noproxy has already been configured with Calico Networking \(10\.69\.9\.9\)/);
  const missing = await lab.calicoctl(['container', 'add', 'nosuch', 'auto', '--docker', lab.dockerd.host, '--state-dir', lab.dir]);
  assert.match(missing.stderr, /Container nosuch was not found/);

  const rm = await lab.calicoctl(['container', 'remove', 'noproxy', '--docker', lab.dockerd.host, '--state-dir', lab.dir]);
  assert.equal(rm.code, 0, rm.stderr);
  assert.equal(rm.stdout, 'Removed Calico interface from noproxy\n');
  s = await lab.state();
  assert.deepEqual(s.allocations, []);
  assert.deepEqual(s.endpoints, []);
  const rmAgain = await lab.calicoctl(['container', 'remove', 'noproxy', '--docker', lab.dockerd.host, '--state-dir', lab.dir]);
  assert.equal(rmAgain.code, 0, rmAgain.stderr);
  assert.match(rmAgain.stdout, /Container noproxy doesn't contain any endpoints: nothing to remove/);
  // Added again, then removed by Docker alone: the reconciler releases its address.
  const auto = await lab.calicoctl(['container', 'add', 'noproxy', 'auto', '--docker', lab.dockerd.host, '--state-dir', lab.dir]);
  assert.match(auto.stdout, /^IP 10\.69\.\d+\.\d+ added to noproxy\n$/);
  await lab.direct(['rm', '-f', id]);
  await lab.direct(['network', 'rm', 'plain']);
  await lab.waitClean();
});

test('on a host whose node runs under another name, profile member add and node bgppeer find it without --hostname', { skip: !isRoot() }, async () => {
  const id = (await lab.dockerOk(['run', '-d', '--name', 'member1', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '1d'])).trim();
  // The lab's node runs as host labhost (as `calicoctl node --hostname labhost`); this machine has another hostname.
  const add = await lab.calicoctl(['profile', 'WEBB', 'member', 'add', 'member1', '--docker', lab.dockerd.host, '--state-dir', lab.dir]);
  assert.equal(add.code, 0, add.stderr);
  assert.match(add.stdout, /Added member1 to WEBB/);
  assert.match(add.stderr, /Using host name labhost: the name of the node on this machine \(.*\); this machine's hostname is /);
  const eps = (await lab.state()).endpoints.filter((e) => e.containerId === id);
  assert.equal(eps.length, 1);
  assert.deepEqual(eps[0]!.profile_ids, ['WEBB']);
  // Removing what is not there: exit 0 (already so).
  const notMember = await lab.calicoctl(['profile', 'OTHER', 'member', 'remove', 'member1', '--docker', lab.dockerd.host, '--state-dir', lab.dir]);
  assert.equal(notMember.code, 0, notMember.stderr);
  assert.match(notMember.stdout, /not a member of profile OTHER: nothing to remove/);
  // node bgppeer: this host's peers, under the node's name.
  const peer = await lab.calicoctl(['node', '--state-dir', lab.dir, 'bgppeer', 'add', '198.18.0.77', 'as', '65077']);
  assert.equal(peer.code, 0, peer.stderr);
  const shown = JSON.parse((await lab.calicoctl(['node', '--state-dir', lab.dir, 'bgppeer', 'show', '-o', 'json'], true)).stdout);
  assert.deepEqual(shown.map((p: { ip: string }) => p.ip), ['198.18.0.77']);
  const named = JSON.parse((await lab.calicoctl(['node', 'bgppeer', 'show', '-o', 'json', '--hostname', 'labhost'], true)).stdout);
  assert.deepEqual(named, shown);
  const rm = await lab.calicoctl(['node', '--state-dir', lab.dir, 'bgppeer', 'remove', '198.18.0.77']);
  assert.equal(rm.code, 0, rm.stderr);
  await lab.dockerOk(['rm', '-f', id]);
  await lab.waitClean();
});

test('a node restart adopts running containers: same address, still reachable, nothing released', { skip: !isRoot() }, async () => {
  const id = (await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '1d'])).trim();
  const addr = await addrOf(id);
  const before = await lab.state();
  await lab.killNode();
  await lab.startNode();
  // Past a sweep and the GC grace: still there.
  await new Promise((r) => setTimeout(r, 4000));
  const after = await lab.state();
  assert.deepEqual(after.allocations.map((a) => a.address), before.allocations.map((a) => a.address));
  assert.deepEqual(after.allocations[0].attrs.container, id);
  assert.deepEqual(after.endpoints.map((e) => e.endpointId), before.endpoints.map((e) => e.endpointId));
  assert.equal(await addrOf(id), addr);
  const ping = await lab.ns.exec('busybox', ['ping', '-c', '1', '-W', '2', addr]);
  assert.equal(ping.code, 0, ping.stdout);
  // A removal while the node is down is caught up at the next start.
  await lab.stopNode();
  await lab.direct(['rm', '-f', id]);
  await lab.startNode();
  await lab.waitClean();
});
