// Policy in the kernel on a stock dockerd (iptables on, FORWARD policy DROP):
// the blog post's profile steps on one host, a LAN that is let in by a rule
// update, first-instruction pings that meet their policy, anti-spoofing,
// repair of what someone else flushed, IPv6, containers kept off their own
// host's services (and the node option that lets them in again).
import { spawn } from 'node:child_process';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CALICOCTL_MAIN, teardownAll, isRoot, Netns, vethLink, addRoute, makeRunDir, onTeardown, removeTree, waitFor } from '../harness';
import { CalicoLab, LAB_HOST_IP } from './calico-lab';
import { counted, probe, putRules, removeContainers, ruleUpdate, StreamResult } from './calico-policy-lab';
import { fromClassChain } from '../../src/names/kernel';
import { DEFAULT_PROFILE } from '../../src/datastore';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd, iptables)';

const POOL4 = '10.67.0.0/16';
const POOL6 = 'fd67::/64';
let lab: CalicoLab;
let lan: Netns;

/** The blog post's prof_group1.json, as the post's reader saved it. */
const PROF_GROUP1 = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'examples', 'blog', 'prof_group1.json'), 'utf8');

before(async () => {
  if (skip) return;
  lab = await CalicoLab.start({ pools: [POOL4, POOL6] });
  // A LAN host with a static route to the pool via the host (the blog post's first routing step).
  lan = await Netns.create('cdtplan');
  await vethLink({ side: lab.ns, ifName: 'lan0', addr: '192.0.2.1/24' }, { side: lan, ifName: 'eth0', addr: '192.0.2.2/24' });
  await addRoute(lan, POOL4, '192.0.2.1');
  await lab.ns.ok('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  // And over IPv6 (nodad: usable at once).
  await lab.ns.ok('ip', ['addr', 'add', '2001:db8:67::1/64', 'dev', 'lan0', 'nodad']);
  await lan.ok('ip', ['addr', 'add', '2001:db8:67::2/64', 'dev', 'eth0', 'nodad']);
  await lan.ok('ip', ['-6', 'route', 'add', POOL6, 'via', '2001:db8:67::1']);
  await lab.ns.ok('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
});

/** An echo server on tcp 8080 (busybox nc, one `cat` per connection). */
const ECHO_8080 = ['sh', '-c', 'nc -ll -p 8080 -e cat'];

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

test('a rule update takes effect within 1 s both ways: an allowed flow starts, a removed one stops (established connections too)', { skip }, async () => {
  try {
    await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.90.1', '-e', 'CALICO_PROFILE=WEB', '--name', 'web1', lab.image, ...ECHO_8080]);
    await ruleUpdate(lab, 'WEB', []);
    const closed = await probe<{ tries: number }>(lan, ['connect', '10.67.90.1', '8080', 'closed']).result;
    assert.equal(closed.tries, 1, 'nothing lets the LAN in yet');

    // Allowed: a fresh connection every 20 ms (100 ms connect timeout) until one gets through.
    const opened = probe<{ at: number }>(lan, ['connect', '10.67.90.1', '8080', 'open']);
    await opened.ready;
    const written = await putRules(lab, 'WEB', [{ action: 'allow', protocol: 'tcp', dst_ports: [8080], src_net: '192.0.2.0/24' }]);
    const allowMs = (await opened.result).at - written;
    assert.ok(allowMs <= 1000, `allowed within 1 s (${allowMs} ms)`);

    // Removed: an established stream (one echo every 20 ms) stops, and new connections fail.
    const stream = probe<StreamResult>(lan, ['stream', '10.67.90.1', '8080', '10000', '400']);
    await stream.ready;
    await new Promise((r) => setTimeout(r, 300));
    const refused = probe<{ at: number }>(lan, ['connect', '10.67.90.1', '8080', 'closed']);
    await refused.ready;
    const removed = await putRules(lab, 'WEB', []);
    const s = await stream.result;
    const streamMs = s.lastEchoAt - removed;
    const newMs = (await refused.result).at - removed;
    console.log(`# rule update, from the etcd write: allow tcp 8080 -> first connection ${allowMs} ms; removed -> established stream's last echo ${streamMs} ms, new connections refused ${newMs} ms`);
    assert.ok(s.echoes > 10, `the stream echoed before the update (${s.echoes})`);
    assert.ok(s.lastEchoAt >= removed, 'the stream ran until the update');
    assert.ok(streamMs <= 1000, `the established connection stopped within 1 s (${streamMs} ms)`);
    assert.ok(newMs <= 1000, `new connections refused within 1 s (${newMs} ms)`);
  } finally {
    await removeContainers(lab, ['web1']);
  }
});

test('a container sending from a forged source address is dropped and counted', { skip }, async () => {
  try {
    await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.91.2', '--name', 'peer', lab.image, 'sleep', '1d']);
    await lab.dockerOk(['run', '-d', '--cap-add', 'NET_ADMIN', '-e', 'CALICO_IP=10.67.91.1', '--name', 'spoofer', lab.image, 'sleep', '1d']);
    // The source check is the dispatch's: (address, interface) pairs of this host's endpoints.
    const chain = 'cali-from-wl-dispatch';
    assert.equal(await ping('spoofer', '10.67.91.2'), true, 'from its own address it reaches its peer (same default profile)');
    const before = await counted(lab, 4, chain, /Anti-spoof.*source address/);
    await lab.dockerOk(['exec', 'spoofer', 'ip', 'addr', 'add', '10.67.91.99/32', 'dev', 'eth0']);
    const r = await lab.docker(['exec', 'spoofer', 'ping', '-c', '3', '-W', '1', '-I', '10.67.91.99', '10.67.91.2']);
    assert.notEqual(r.code, 0, 'no reply to the forged source');
    const after = await counted(lab, 4, chain, /Anti-spoof.*source address/);
    console.log(`# anti-spoof DROP counter in ${chain}: ${before} -> ${after}`);
    assert.ok(after - before >= 3, `the three forged pings counted on the anti-spoof rule (${before} -> ${after})`);
    assert.equal(await ping('spoofer', '10.67.91.2'), true, 'its own address still works');
  } finally {
    await removeContainers(lab, ['peer', 'spoofer']);
  }
});

test('first instruction: 50/50 pings to a peer in the same profile succeed, 50/50 to one in another profile fail', { skip }, async () => {
  try {
    await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.92.1', '-e', 'CALICO_PROFILE=G', '--name', 'gpeer', lab.image, 'sleep', '1d']);
    await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.92.2', '-e', 'CALICO_PROFILE=H', '--name', 'hpeer', lab.image, 'sleep', '1d']);
    const first = (peer: string) => lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', '-e', 'CALICO_PROFILE=G', lab.image, 'ping', '-c1', '-W1', peer]);
    let same = 0;
    let other = 0;
    const failures: string[] = [];
    // Two at a time: one container of G comes or goes while another one's first ping is in flight.
    for (let i = 0; i < 50; i++) {
      const [a, b] = await Promise.all([first('10.67.92.1'), first('10.67.92.2')]);
      if (a.code === 0) same++;
      else failures.push(`#${i}: ${a.stdout.trim().split('\n').pop()} ${a.stderr.trim()}`);
      if (b.code !== 0) other++;
    }
    console.log(`# first-instruction pings: same profile ${same}/50 succeeded, other profile ${other}/50 failed`);
    // Where the failed ones died: every DROP rule of ours whose counter moved.
    const drops = same === 50 ? '' : (await lab.ns.ok('iptables-save', ['-c', '-t', 'filter'])).stdout.split('\n').filter((l) => /cali-.*-j DROP/.test(l) && !l.startsWith('[0:0]')).join('\n');
    assert.equal(same, 50, `same profile: ${failures.slice(0, 5).join('; ')}\ndrops:\n${drops}`);
    assert.equal(other, 50);
  } finally {
    await removeContainers(lab, ['gpeer', 'hpeer']);
  }
});

test('IPv6: the group reaches itself, another profile is out, a rule update lets the LAN in and out again', { skip }, async () => {
  try {
    const run6 = (name: string, ip4: string, ip6: string, prof: string, cmd: string[]) =>
      lab.dockerOk(['run', '-d', '-e', `CALICO_IP=${ip4}`, '-e', `CALICO_IP6=${ip6}`, '-e', `CALICO_PROFILE=${prof}`, '--name', name, lab.image, ...cmd]);
    await run6('v6a', '10.67.93.1', 'fd67::93:1', 'V6G', ECHO_8080);
    await run6('v6b', '10.67.93.2', 'fd67::93:2', 'V6G', ['sleep', '1d']);
    await run6('v6c', '10.67.93.3', 'fd67::93:3', 'V6H', ['sleep', '1d']);
    const ping6 = async (from: string, to: string) => (await lab.docker(['exec', from, 'ping', '-6', '-c', '1', '-W', '1', to])).code === 0;
    await waitFor('v6a and v6b reach each other over IPv6', () => ping6('v6b', 'fd67::93:1'), 5000, 100);
    assert.equal(await ping6('v6a', 'fd67::93:2'), true);
    assert.equal(await ping6('v6c', 'fd67::93:1'), false, 'another profile cannot reach the group');
    assert.equal(await ping6('v6a', 'fd67::93:3'), false, 'the group cannot reach another profile');
    assert.equal((await probe<{ tries: number }>(lan, ['connect', 'fd67::93:1', '8080', 'closed']).result).tries, 1, 'the LAN is out over IPv6');

    const opened = probe<{ at: number }>(lan, ['connect', 'fd67::93:1', '8080', 'open']);
    await opened.ready;
    const written = await putRules(lab, 'V6G', [{ action: 'allow', src_tag: 'V6G' }, { action: 'allow', protocol: 'tcp', dst_ports: [8080], src_net: '2001:db8:67::/64' }]);
    const allowMs = (await opened.result).at - written;
    assert.ok(allowMs <= 1000, `IPv6 allow within 1 s (${allowMs} ms)`);
    assert.equal((await probe<{ tries: number }>(lan, ['connect', '10.67.93.1', '8080', 'closed']).result).tries, 1, 'an IPv6 net lets nothing in over IPv4');

    const stream = probe<StreamResult>(lan, ['stream', 'fd67::93:1', '8080', '10000', '400']);
    await stream.ready;
    await new Promise((r) => setTimeout(r, 300));
    const refused = probe<{ at: number }>(lan, ['connect', 'fd67::93:1', '8080', 'closed']);
    await refused.ready;
    const removed = await putRules(lab, 'V6G', [{ action: 'allow', src_tag: 'V6G' }]);
    const s = await stream.result;
    const streamMs = s.lastEchoAt - removed;
    const newMs = (await refused.result).at - removed;
    console.log(`# IPv6, from the etcd write: allow -> first connection ${allowMs} ms; removed -> established stream's last echo ${streamMs} ms, new connections refused ${newMs} ms`);
    assert.ok(s.echoes > 10 && s.lastEchoAt >= removed && streamMs <= 1000, `the IPv6 stream stopped within 1 s (${streamMs} ms, ${s.echoes} echoes)`);
    assert.ok(newMs <= 1000, `new IPv6 connections refused within 1 s (${newMs} ms)`);
    assert.equal(await ping6('v6b', 'fd67::93:1'), true, 'the group still reaches itself');
  } finally {
    await removeContainers(lab, ['v6a', 'v6b', 'v6c']);
  }
  await lab.waitClean();
});

/** A TCP echo service in the lab host's own namespace, on every address of the host (as etcd or a node port would be). */
async function hostService(port: number): Promise<void> {
  const script = `require('net').createServer((s) => s.pipe(s)).listen(${port}, '::', () => console.log('LISTENING'))`;
  const child = spawn('nsenter', [`--net=${lab.ns.path}`, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  onTeardown('host service', async () => void child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  await waitFor('the host service to listen', async () => out.includes('LISTENING'), 10000, 50);
}

/** Whether `from` (a container) gets an echo back from addr:port within 2 s. */
async function echoes(from: string, addr: string, port: number): Promise<boolean> {
  const r = await lab.direct(['exec', from, 'sh', '-c', `echo hello-${port} | nc -w 2 ${addr} ${port}`], { timeoutMs: 15000 });
  return r.stdout.includes(`hello-${port}`);
}

test("a container on the default profile cannot open a TCP service of its own host; peers and the host reach it; a rule naming the host's address, or --endpoint-to-host-action accept, opens it", { skip }, async () => {
  const PORT = 9181;
  const DOCKER0 = '172.31.0.1';
  await hostService(PORT);
  try {
    await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.94.1', '-e', 'CALICO_IP6=fd67::94:1', '--name', 'hc1', lab.image, ...ECHO_8080]);
    await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.94.2', '-e', 'CALICO_IP6=fd67::94:2', '--name', 'hc2', lab.image, 'sleep', '1d']);
    await lab.dockerOk(['run', '-d', '-e', 'CALICO_IP=10.67.94.3', '-e', 'CALICO_PROFILE=HOSTOK', '--name', 'hc3', lab.image, 'sleep', '1d']);
    // hc1's class: the default profile alone.
    const fw = fromClassChain(DEFAULT_PROFILE);
    const dropsBefore = await counted(lab, 4, fw, /Default DROP/);

    // The host's LAN address, docker0's, and IPv6 (the host's own addresses on lab0): all closed.
    await lab.ns.ok('ip', ['addr', 'add', '2001:db8:94::1/128', 'dev', 'lab0', 'nodad']);
    assert.equal(await echoes('hc1', LAB_HOST_IP, PORT), false, `the host's address ${LAB_HOST_IP} is closed to a container on the default profile`);
    assert.equal(await echoes('hc1', DOCKER0, PORT), false, "docker0's address too");
    assert.equal(await echoes('hc2', '2001:db8:94::1', PORT), false, "and the host's IPv6 address");
    assert.ok((await counted(lab, 4, fw, /Default DROP/)) > dropsBefore, `dropped by the endpoint's default DROP in ${fw}`);

    // What must keep working: the peer, the host, IPv6 neighbour discovery, names through Docker's embedded DNS.
    assert.equal(await echoes('hc2', '10.67.94.1', 8080), true, 'a peer on the same profile reaches it');
    assert.equal((await lab.ns.exec('sh', ['-c', 'echo hello-8080 | busybox nc -w 2 10.67.94.1 8080'])).stdout.includes('hello-8080'), true, 'the host reaches it, replies come back');
    assert.equal((await lab.direct(['exec', 'hc2', 'ping', '-6', '-c', '1', '-W', '2', 'fd67::94:1'])).code, 0, 'IPv6 between peers (neighbour discovery with the host works)');
    assert.match(await lab.dockerOk(['exec', 'hc2', 'cat', '/etc/resolv.conf']), /nameserver 127\.0\.0\.11/, "Docker's embedded DNS, inside the container's namespace");
    assert.equal((await lab.direct(['exec', 'hc2', 'ping', '-c', '1', '-W', '2', 'hc1'])).code, 0, 'container names resolve on the calico network');

    // A rule of the container's profile that names the host's address opens that address (and port) only.
    await putRules(lab, 'HOSTOK', [{ action: 'allow', src_tag: 'HOSTOK' }], [{ action: 'allow', protocol: 'tcp', dst_net: `${LAB_HOST_IP}/32`, dst_ports: [PORT] }, { action: 'allow' }]);
    await waitFor('the rule naming the host opens it', () => echoes('hc3', LAB_HOST_IP, PORT), 5000, 100);
    assert.equal(await echoes('hc3', DOCKER0, PORT), false, 'another host address stays closed');
    assert.equal(await echoes('hc1', LAB_HOST_IP, PORT), false, 'and the default profile stays out');

    // --endpoint-to-host-action accept (the 2015 behaviour): the outbound allow-all reaches the host again.
    await lab.stopNode();
    const node = lab.spawnCalicoctlNode({ extra: ['--endpoint-to-host-action', 'accept'] });
    try {
      await node.ready();
      assert.equal(node.child.exitCode, null, node.log());
      await waitFor('accept: the host is open', () => echoes('hc1', LAB_HOST_IP, PORT), 15000, 200);
      assert.equal(await echoes('hc1', DOCKER0, PORT), true, "accept: docker0's address too");
      assert.equal(await echoes('hc2', '10.67.94.1', 8080), true, 'accept: the peer still reaches it');
    } finally {
      node.child.kill('SIGTERM');
      await node.exited;
      await lab.startNode();
    }
    await waitFor('drop again with the default node', async () => !(await echoes('hc1', LAB_HOST_IP, PORT)), 15000, 200);
  } finally {
    await removeContainers(lab, ['hc1', 'hc2', 'hc3']);
  }
  await lab.waitClean();
});

test('membership sticks: member remove/add survives `docker restart`, a dockerd restart and a node restart; the old profile\'s peer stays refused', { skip, timeout: 300000 }, async () => {
  const member = (op: 'add' | 'remove', profile: string, c: string) =>
    lab.calicoctl(['profile', profile, 'member', op, c, '--docker', `unix://${lab.dockerd.socket}`, '--hostname', lab.hostname], true);
  const run = (name: string, ip: string, prof: string) =>
    lab.dockerOk(['run', '-d', '--restart=always', '-e', `CALICO_IP=${ip}`, '-e', `CALICO_PROFILE=${prof}`, '--name', name, lab.image, 'sleep', '1d']);
  const running = (name: string) => async () => (await lab.direct(['inspect', '-f', '{{.State.Running}}', name])).stdout.trim() === 'true';
  try {
    await run('moved', '10.67.94.1', 'OPEN');
    await run('openpeer', '10.67.94.2', 'OPEN');
    await run('quarpeer', '10.67.94.3', 'QUAR');
    await waitFor('an OPEN peer reaches the container', () => ping('openpeer', '10.67.94.1'), 5000, 100);
    await member('remove', 'OPEN', 'moved');
    await member('add', 'QUAR', 'moved');
    const check = async (after: string) => {
      await waitFor(`${after}: a QUAR peer reaches the moved container`, () => ping('quarpeer', '10.67.94.1'), 20000, 200);
      assert.equal(await ping('openpeer', '10.67.94.1'), false, `${after}: the OPEN peer is refused`);
      const id = (await lab.direct(['inspect', '-f', '{{.Id}}', 'moved'])).stdout.trim();
      const eps = (await lab.state()).endpoints.filter((e) => e.containerId === id);
      assert.deepEqual(eps.map((e) => `${e.state} ${e.profile_ids.join()}`), ['active QUAR'], `${after}: one record, still in QUAR`);
    };
    await check('member add');

    await lab.dockerOk(['restart', '-t', '0', 'moved']);
    await check('docker restart');

    await lab.dockerd.restart();
    for (const c of ['moved', 'openpeer', 'quarpeer']) await waitFor(`${c} running again`, running(c), 30000, 200);
    await check('dockerd restart');

    await lab.stopNode();
    await lab.startNode();
    await check('node restart');
    // And a stop/start while the node is away: the sweep and Join keep the record's profiles too.
    await lab.killNode();
    await lab.direct(['restart', '-t', '0', 'moved']);
    await lab.startNode();
    await check('restart while the node was down');
  } finally {
    await removeContainers(lab, ['moved', 'openpeer', 'quarpeer']);
  }
  await lab.waitClean();
});
