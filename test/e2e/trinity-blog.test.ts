// THE BLOG POST, as one test: its commands in its order, each as written
// there, in the lab of three hosts behind a router (addresses are the lab's;
// `docker run -it ... ubuntu /bin/bash` becomes `docker run -d ... sleep`,
// there being no terminal and no ubuntu image here). Real etcd cluster, real
// dockerds (FORWARD DROP), real `calicoctl node`s with their BIRDs, a real
// BIRD route reflector on the router, real pings.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isRoot, makeRunDir, onTeardown, removeTree, runOk, teardownAll, waitFor } from '../harness';
import { HOST_NAMES, ROUTER_IP, TrinityLab, lanIp, startTrinityLab } from './trinity-lab';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd, BIRD)';

/** The post's subnet (inside the default 192.168.0.0/16 pool) and the containers' addresses in it. */
const SUBNET = '192.168.89.0/24';
const NODE1_IP = '192.168.89.1';
const NODE2_IP = '192.168.89.2';

/** The post's prof_group1.json, as a file of the repository. */
const PROF_GROUP1_FILE = path.join(__dirname, '..', '..', '..', 'examples', 'blog', 'prof_group1.json');

let lab: TrinityLab;

before(async () => {
  if (skip) return;
  lab = await startTrinityLab();
});

test('the blog post, end to end, in its order', { skip }, async (t) => {
  const { trinity10, trinity20 } = lab.hosts;
  const step = (s: string) => t.diagnostic(`step: ${s}`);

  step('etcdctl member list | sort -k 2');
  const members = await trinity10.exec('etcdctl', ['member', 'list']);
  assert.equal(members.code, 0, members.stderr);
  const names = members.stdout.trim().split('\n').map((l) => l.split(', ')[2]).sort();
  assert.deepEqual(names, ['etcd-trinity10', 'etcd-trinity20', 'etcd-trinity30'], members.stdout);

  step('calicoctl node --ip=<LAN address> on trinity10, trinity20, trinity30');
  for (const n of HOST_NAMES) await lab.hosts[n].startNode();

  step('calicoctl pool show / pool add / pool remove / pool show (trinity10)');
  const show1 = await trinity10.calicoctlOk(['pool', 'show']);
  assert.match(show1, /192\.168\.0\.0\/16/, 'the default pool');
  await trinity10.calicoctlOk(['pool', 'add', SUBNET]);
  await trinity10.calicoctlOk(['pool', 'remove', '192.168.0.0/16']);
  const show2 = await trinity10.calicoctlOk(['pool', 'show']);
  assert.match(show2, /192\.168\.89\.0\/24/);
  assert.doesNotMatch(show2, /192\.168\.0\.0\/16/);

  step('export DOCKER_HOST=<proxy>; docker run -e CALICO_IP=... --name group1-node1 (trinity10), group1-node2 (trinity20)');
  await trinity10.dockerOk(['run', '-d', '-e', `CALICO_IP=${NODE1_IP}`, '--name', 'group1-node1', lab.image, 'sleep', '1d']);
  await trinity20.dockerOk(['run', '-d', '-e', `CALICO_IP=${NODE2_IP}`, '--name', 'group1-node2', lab.image, 'sleep', '1d']);
  assert.equal(await trinity10.containerIp('group1-node1'), NODE1_IP);
  assert.equal(await trinity20.containerIp('group1-node2'), NODE2_IP);

  step('calicoctl profile PROF_GROUP1 member add group1-node1 (trinity10), group1-node2 (trinity20)');
  // --docker: the lab's dockerd is not at /var/run/docker.sock, where a stock host has it.
  const dockerOf = (h: typeof trinity10) => ['--docker', `unix://${h.dockerd.socket}`];
  const add1 = await trinity10.calicoctl(['profile', 'PROF_GROUP1', 'member', 'add', 'group1-node1', ...dockerOf(trinity10)]);
  // The first member add creates the profile, as in 2015.
  assert.equal(add1.code, 0, add1.stderr);
  assert.match(add1.stdout, /Added group1-node1 to PROF_GROUP1/);
  assert.match(await trinity20.calicoctlOk(['profile', 'PROF_GROUP1', 'member', 'add', 'group1-node2', ...dockerOf(trinity20)]), /Added group1-node2 to PROF_GROUP1/);

  step('ping -c 1 <group1-node2> from group1-node1');
  await waitFor('group1-node1 -> group1-node2 across hosts', () => trinity10.pingFrom('group1-node1', NODE2_IP), 10000, 200);

  step('a static route on the router via trinity10; the LAN cannot reach the containers yet (policy)');
  await lab.router.ok('ip', ['route', 'add', SUBNET, 'via', lanIp('trinity10')]);
  assert.equal(await lab.clientPing(NODE1_IP), false, 'the LAN is not in PROF_GROUP1: dropped');

  step('calicoctl profile PROF_GROUP1 rule update < prof_group1.json');
  await trinity10.calicoctlOk(['profile', 'PROF_GROUP1', 'rule', 'update'], { input: fs.readFileSync(PROF_GROUP1_FILE) });

  step('the LAN pings both containers through the router');
  await waitFor('LAN -> group1-node1', () => lab.clientPing(NODE1_IP), 10000, 200);
  await waitFor('LAN -> group1-node2 (router -> trinity10 -> trinity20)', () => lab.clientPing(NODE2_IP), 10000, 200);

  step('calicoctl bgppeer rr add <router>; the router drops its static route and reflects');
  await trinity10.calicoctlOk(['bgppeer', 'rr', 'add', ROUTER_IP]);
  await lab.router.ok('ip', ['route', 'del', SUBNET]);
  let table = '';
  await waitFor('the router learns each container\'s route by BGP, next hop its own host', async () => {
    table = (await lab.routerBirdc(['show', 'route', 'all'])).stdout;
    return /192\.168\.89\.0\/26\s+unicast \[trinity10 [^\]]*\][^\n]*\n\s+via 198\.18\.0\.10 on eth0/.test(table) &&
      /192\.168\.89\.2\/32\s+unicast \[trinity20 [^\]]*\][^\n]*\n\s+via 198\.18\.0\.20 on eth0/.test(table);
  }, 30000, 300).catch((e) => {
    throw new Error(`${(e as Error).message}\nrouter table:\n${table}`);
  });
  assert.match(table, /BGP\.origin/, 'learned by BGP');
  // In the router's kernel from BGP only: no static route anywhere.
  const kernel = (await lab.router.ok('ip', ['route', 'show', 'root', SUBNET])).stdout;
  assert.match(kernel, /192\.168\.89\.0\/26 via 198\.18\.0\.10 dev eth0 proto bird/, kernel);
  assert.match(kernel, /192\.168\.89\.2 via 198\.18\.0\.20 dev eth0 proto bird/, kernel);
  assert.doesNotMatch(kernel, /^192\.168\.89\.0\/24/m, 'the static route is gone');
  for (const n of HOST_NAMES) {
    const st = await lab.hosts[n].calicoctlOk(['status', '--state-dir', lab.hosts[n].stateDir, '--plugin-name', lab.hosts[n].pluginName]);
    assert.match(st, new RegExp(`\\| ${ROUTER_IP.replace(/\./g, '\\.')} +\\| rr +\\| up +\\|[^|]+\\| Established`), `${n} status:\n${st}`);
  }
  step('the LAN still reaches both (straight to each container\'s host)');
  await waitFor('LAN -> group1-node1 by BGP', () => lab.clientPing(NODE1_IP), 10000, 200);
  await waitFor('LAN -> group1-node2 by BGP', () => lab.clientPing(NODE2_IP), 10000, 200);
  const trace = await lab.client.exec('busybox', ['traceroute', '-n', '-q', '1', '-w', '1', NODE2_IP], { timeoutMs: 20000 });
  assert.equal(trace.code, 0, trace.stderr);
  assert.match(trace.stdout, /^ 2 +198\.18\.0\.20 /m, `group1-node2 reached through trinity20, not trinity10:\n${trace.stdout}`);

  step('calicoctl shownodes --detailed');
  const nodes = await trinity10.calicoctlOk(['shownodes', '--detailed']);
  assert.match(nodes, /\| trinity10 \| docker +\| [0-9a-f]{12} \| [0-9a-f]{12} \| 192\.168\.89\.1\/32 +\|/, nodes);
  assert.match(nodes, /\| trinity20 \| docker +\| [0-9a-f]{12} \| [0-9a-f]{12} \| 192\.168\.89\.2\/32 +\|/, nodes);
  assert.match(nodes, /\| trinity10 \| 198\.18\.0\.10 \|/, 'each host\'s BGP address');

  step('calicoctl diags');
  const cwd = await makeRunDir('trinity-diags');
  onTeardown(`removing ${cwd}`, () => removeTree(cwd));
  const d = await trinity10.calicoctl(['diags', '--state-dir', trinity10.stateDir], { cwd, timeoutMs: 60000 });
  assert.equal(d.code, 0, d.stderr);
  const m = /Diags saved to (\S+\.tar\.gz)/.exec(d.stdout);
  assert.ok(m, d.stdout);
  assert.ok(fs.existsSync(m[1]!));
  const files = (await runOk('tar', ['-tzf', m[1]!])).stdout.split('\n').filter((l) => l && !l.endsWith('/')).map((f) => f.split('/').slice(1).join('/'));
  for (const part of ['date.txt', 'hostname.txt', 'ip-addr.txt', 'ip-route.txt', 'ip6-route.txt', 'iptables-save.txt', 'ip6tables-save.txt', 'ipset-list.txt',
    'birdc-show-protocols-all.txt', 'birdc-show-route.txt', 'node/bird.conf', 'node/bird.log', 'calicoctl-status.txt', 'calicoctl-shownodes-detailed.txt', 'etcd-dump.jsonl']) {
    assert.ok(files.includes(part), `${part} in the archive (${files.join(', ')})`);
  }
  const top = path.basename(m[1]!, '.tar.gz');
  const protos = (await runOk('tar', ['-xzOf', m[1]!, `${top}/birdc-show-protocols-all.txt`])).stdout;
  assert.match(protos, /Rr_198_18_0_1/, 'the archive holds the live BGP session');
});
