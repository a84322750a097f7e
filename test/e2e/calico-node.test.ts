// The node process as an operator runs it (`calicoctl node` in a lab host
// namespace, real dockerd and etcd): the endpoint is in etcd before the
// container's first instruction; SIGTERM stops the node and every child
// within 5 s whatever holds it (dockerd's keep-alive on the plugin socket, a
// `docker logs -f` through the proxy, an etcd that does not answer);
// `calicoctl node stop` refuses while the host has endpoints; a second node
// on the same host name is refused and touches nothing of the first's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { isRoot, makeRunDir, onTeardown, removeTree, teardownAll, waitFor } from '../harness';
import { CalicoLab, LAB_HOST_IP, SpawnedNode } from './calico-lab';
import { ruleUpdate } from './calico-policy-lab';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd)';

const POOL4 = '10.66.0.0/16';
const ETCD = 'http://127.0.0.1:2379';
const PROBE_PORT = 8099;
let lab: CalicoLab;

before(async () => {
  if (skip) return;
  lab = await CalicoLab.start({ pools: [POOL4] });
});

/** Every process below pid (its children, theirs, ...), from /proc. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* gone meanwhile */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parent) if (pp === p) (out.push(c), walk(c));
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

test('the endpoint is in etcd before the container\'s first instruction: 20 of 20', { skip }, async () => {
  const probe = spawn('nsenter', [`--net=${lab.ns.path}`, process.execPath, path.join(__dirname, 'endpoint-probe-main.js'), ETCD, lab.hostname, LAB_HOST_IP, String(PROBE_PORT)], { stdio: ['ignore', 'pipe', 'inherit'] });
  onTeardown('endpoint probe', () => void probe.kill('SIGKILL'));
  let out = '';
  probe.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  await waitFor('probe server', async () => out.includes('READY'), 20000);
  // Containers reach a service of their own host only by a rule naming its address (docs/policy.md).
  await lab.calicoctl(['profile', 'add', 'PROBE'], true);
  await ruleUpdate(lab, 'PROBE', [], [{ action: 'allow', protocol: 'tcp', dst_net: `${LAB_HOST_IP}/32`, dst_ports: [PROBE_PORT] }]);
  const dir = await makeRunDir('cidfiles');
  onTeardown(`remove ${dir}`, () => removeTree(dir));
  const failures: string[] = [];
  for (let i = 0; i < 20; i++) {
    const cidfile = path.join(dir, `c${i}`);
    // The container's first instruction asks the host whether its endpoint is recorded.
    const seen = out.length;
    const r = await lab.docker(['run', '--rm', '--cidfile', cidfile, '-e', 'CALICO_IP=auto', '-e', 'CALICO_PROFILE=PROBE', lab.image, 'nc', '-w', '5', LAB_HOST_IP, String(PROBE_PORT)]);
    const cid = fs.existsSync(cidfile) ? fs.readFileSync(cidfile, 'utf8').trim() : '?';
    const answer = await waitFor('the probe\'s answer', async () => out.slice(seen).split('\n')[0] || undefined, 10000).catch(() => 'no answer');
    if (r.code !== 0 || answer !== `found ${cid}`) failures.push(`#${i}: exit ${r.code} probe "${answer}" ${r.stderr.trim()}`);
  }
  assert.deepEqual(failures, [], `${failures.length}/20 first instructions did not find their endpoint`);
  await lab.waitClean();
});

test('calicoctl node: stop refuses with endpoints; SIGTERM stops node and children within 5 s with a keep-alive, logs -f and etcd down; stop --force', { skip }, async () => {
  await lab.stopNode();
  const stateDir = path.join(lab.dir, 'operator-node');
  let node: SpawnedNode = lab.spawnCalicoctlNode({ stateDir });
  await node.ready();
  assert.equal(node.child.exitCode, null, node.log());
  const id = (await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', lab.image, 'sh', '-c', 'while true; do echo tick; sleep 0.2; done'])).trim();
  await waitFor('endpoint recorded', async () => (await lab.state()).endpoints.some((e) => e.containerId === id), 10000);

  const refused = await lab.calicoctl(['node', 'stop', '--state-dir', stateDir, '--hostname', lab.hostname]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /Current host has active endpoints so can't be stopped\. Force with --force/);
  assert.ok(alive(node.child.pid!), 'the node still runs after a refused stop');

  // What held the node in the field: dockerd's keep-alive connection on the
  // plugin socket, a streaming client through the proxy, an etcd that hangs.
  const sock = `/run/docker/plugins/${lab.pluginName}.sock`;
  const ss = await lab.ns.ok('ss', ['-xn']);
  assert.match(ss.stdout, new RegExp(`ESTAB.*${sock.replace(/\./g, '\\.')}`), 'dockerd keeps a connection to the plugin');
  const logs = spawn('docker', ['-H', lab.proxyHost, 'logs', '-f', id], { stdio: ['ignore', 'pipe', 'ignore'] });
  onTeardown('docker logs -f', () => void logs.kill('SIGKILL'));
  let streamed = '';
  logs.stdout!.on('data', (b: Buffer) => (streamed += b.toString()));
  await waitFor('logs -f streaming', async () => streamed.includes('tick'), 10000);
  const children = descendants(node.child.pid!);
  assert.ok(children.length > 0, 'the node has children (ip -batch)');
  lab.pauseEtcd(true);
  try {
    const started = Date.now();
    node.child.kill('SIGTERM');
    await Promise.race([node.exited, new Promise((r) => setTimeout(r, 5000))]);
    const ms = Date.now() - started;
    assert.ok(!alive(node.child.pid!), `the node still runs ${ms} ms after SIGTERM:\n${node.log().split('\n').slice(-15).join('\n')}`);
    const left = children.filter(alive);
    assert.deepEqual(left, [], 'every child of the node is gone');
  } finally {
    lab.pauseEtcd(false);
  }

  // The container kept running through it; a new node adopts it; stop --force stops that node.
  assert.equal((await lab.direct(['inspect', '-f', '{{.State.Running}}', id])).stdout.trim(), 'true');
  node = lab.spawnCalicoctlNode({ stateDir });
  await node.ready();
  assert.equal(node.child.exitCode, null, node.log());
  const forced = await lab.calicoctl(['node', 'stop', '--force', '--state-dir', stateDir, '--hostname', lab.hostname]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /Node stopped and all configuration removed/);
  assert.equal(await Promise.race([node.exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('running'), 8000))]), 'exited');
  // Running containers keep their records and addresses (2015's #497: never wipe workload state).
  const s = await lab.state();
  assert.ok(s.endpoints.some((e) => e.containerId === id), 'the running container keeps its endpoint');
  assert.ok(s.allocations.some((a) => a.attrs.container === id), 'and its address');

  await lab.startNode();
  await lab.direct(['rm', '-f', id]);
  await lab.waitClean();
});

test('a second node on a host name a live node holds is refused, naming both; the first node\'s containers keep their addresses', { skip }, async () => {
  const id = (await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '1d'])).trim();
  const addr = (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', id])).trim();
  const other = path.join(lab.dir, 'second-node');
  const second = lab.spawnCalicoctlNode({ stateDir: other, pluginName: `${lab.pluginName}b`, listen: `unix://${path.join(lab.dir, 'second.sock')}` });
  const code = await Promise.race([second.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 30000))]);
  assert.notEqual(code, 'running', 'the second node refused to start');
  assert.notEqual(code, 0);
  const log = second.log();
  assert.match(log, new RegExp(`host name ${lab.hostname} is held by another live node`), log);
  assert.match(log, new RegExp(`state dir ${lab.dir.replace(/[/.]/g, '\\$&')}\\b`), 'names the first node');
  assert.match(log, new RegExp(`state dir ${other.replace(/[/.]/g, '\\$&')}`), 'names itself');
  // Nothing of the first node's was touched: its container keeps address, record and traffic.
  const s = await lab.state();
  assert.ok(s.allocations.some((a) => a.address === addr), 'address kept');
  assert.ok(s.endpoints.some((e) => e.containerId === id), 'endpoint kept');
  assert.equal((await lab.ns.exec('busybox', ['ping', '-c1', '-W2', addr])).code, 0, 'the host still reaches the container');
  assert.equal(fs.existsSync(`/run/docker/plugins/${lab.pluginName}b.sock`), false, 'the refused node left no plugin socket');
  await lab.direct(['rm', '-f', id]);
  await lab.waitClean();
});

test('a veth of this node whose endpoint is gone is swept while the node runs, not only at its start', { skip }, async () => {
  // What a container torn down behind the node's back leaves: a host end carrying the node's alias.
  const name = 'cali0rphan0001';
  await lab.ns.ok('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', 'ctmp0rphan0001']);
  await lab.ns.ok('ip', ['link', 'set', name, 'alias', `calico-docker:${lab.pluginName}`]);
  const foreign = 'cali0ther00001';
  await lab.ns.ok('ip', ['link', 'add', foreign, 'type', 'veth', 'peer', 'name', 'ctmp0ther00001']);
  await waitFor('the orphan swept', async () => !(await lab.workloadLinks()).includes(name), 15000, 200);
  assert.ok((await lab.workloadLinks()).includes(foreign), 'a cali link without our alias is not ours to remove');
  await lab.ns.ok('ip', ['link', 'del', foreign]);
});

test('the blog post\'s pool sequence: a subnet inside the default pool serves automatic addresses, then the wide pool goes', { skip }, async () => {
  const show = await lab.calicoctl(['pool', 'show'], true);
  assert.match(show.stdout, /10\.66\.0\.0\/16/);
  await lab.calicoctl(['pool', 'add', '10.66.89.0/24'], true);
  const id = (await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '1d'])).trim();
  const addr = (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', id])).trim();
  assert.match(addr, /^10\.66\.89\.\d+$/, 'an automatic address comes from the narrower pool');
  const removed = await lab.calicoctl(['pool', 'remove', '10.66.0.0/16']);
  assert.equal(removed.code, 0, removed.stderr);
  const after = await lab.calicoctl(['pool', 'show'], true);
  assert.match(after.stdout, /10\.66\.89\.0\/24/);
  assert.doesNotMatch(after.stdout, /10\.66\.0\.0\/16/);
  assert.ok((await lab.state()).allocations.some((a) => a.address === addr), 'the container keeps its address');
  await lab.direct(['rm', '-f', id]);
  await lab.waitClean();
});
