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
import { HOST_NAMES, ROUTER_IP, TrinityHost, TrinityLab, CLIENT_IP, lanIp, startTrinityLab } from './trinity-lab';
import { ruleMatches } from '../../src/policy';
import type { RuleValue } from '../../src/datastore';

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

/** Packets counted by the rules of `chain` on `host` whose text (as `iptables -S` prints it, counters removed) is `rule` or matches it. */
async function counted(host: TrinityHost, chain: string, rule: string | RegExp): Promise<number> {
  const r = await host.exec('iptables', ['-w', '-t', 'filter', '-S', chain, '-v']);
  assert.equal(r.code, 0, `iptables -S ${chain} on ${host.name}: ${r.stderr}`);
  let n = 0;
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('-A ')) continue;
    const m = /\s-c (\d+) \d+/.exec(line);
    const text = line.replace(/\s-c \d+ \d+/, '').replace(/^-A \S+ /, '');
    if (typeof rule === 'string' ? text === rule : rule.test(text)) n += Number(m?.[1] ?? 0);
  }
  return n;
}

interface TraceJson {
  verdict: 'allow' | 'deny';
  decidedBy: { kind: string; host?: string; chain?: string; rule?: RuleValue; text: string };
  probe?: { chain: string; moved: { rule: string; packets: number }[] };
}

// After the post: a third host joins the group. `policy trace` run on host 1
// (the datastore alone) must say what the kernels then do to each packet of
// a small table, and the rule it names must be the one whose counter moves;
// `endpoint show` finds a container of host 3 from host 1, and on host 3
// shows its kernel state.
test('policy trace and endpoint show against the kernels: host 1 explains traffic to host 3', { skip }, async (t) => {
  const { trinity10, trinity30 } = lab.hosts;
  const NODE3_IP = '192.168.89.3';
  const PLAIN3_IP = '192.168.89.30';
  const dockerOf = (h: TrinityHost) => ['--docker', `unix://${h.dockerd.socket}`];
  await trinity30.dockerOk(['run', '-d', '-e', `CALICO_IP=${NODE3_IP}`, '--name', 'group1-node3', lab.image, 'sleep', '1d']);
  await trinity30.dockerOk(['run', '-d', '-e', `CALICO_IP=${PLAIN3_IP}`, '--name', 'plain-node3', lab.image, 'sleep', '1d']);
  await trinity30.calicoctlOk(['profile', 'PROF_GROUP1', 'member', 'add', 'group1-node3', ...dockerOf(trinity30)]);
  await waitFor('group1-node1 -> group1-node3 across hosts', () => trinity10.pingFrom('group1-node1', NODE3_IP), 15000, 200);

  const pingFromHost = async (h: TrinityHost, ip: string) => (await h.exec('busybox', ['ping', '-c', '1', '-W', '1', ip], { timeoutMs: 5000 })).code === 0;
  const rows: { name: string; a: string; b: string; send: () => Promise<boolean>; verdict: 'allow' | 'deny'; text: RegExp; counter: RegExp | 'rule' }[] = [
    { name: 'group1 -> group1 on another host', a: 'group1-node1', b: NODE3_IP, send: () => trinity10.pingFrom('group1-node1', NODE3_IP),
      verdict: 'allow', text: /^profile PROF_GROUP1 inbound rule 1: allow from tag PROF_GROUP1$/, counter: 'rule' },
    { name: 'the LAN -> group1 (its allow-all)', a: CLIENT_IP, b: NODE3_IP, send: () => lab.clientPing(NODE3_IP),
      verdict: 'allow', text: /^profile PROF_GROUP1 inbound rule 2: allow$/, counter: 'rule' },
    { name: 'group1 -> a default-profile container', a: 'group1-node1', b: PLAIN3_IP, send: () => trinity10.pingFrom('group1-node1', PLAIN3_IP),
      verdict: 'deny', text: /^Default DROP if no profile allowed it$/, counter: /Default DROP/ },
    { name: 'a container -> its own host (endpoint-to-host drop)', a: PLAIN3_IP, b: lanIp('trinity30'), send: () => trinity30.pingFrom('plain-node3', lanIp('trinity30')),
      verdict: 'deny', text: /^Default DROP if no profile allowed it: to this host/, counter: /Default DROP/ },
    { name: 'the host -> its own container', a: lanIp('trinity30'), b: PLAIN3_IP, send: () => pingFromHost(trinity30, PLAIN3_IP),
      verdict: 'allow', text: /^host trinity30 reaches its own containers/, counter: /The host reaches its containers/ },
  ];
  // The LAN reaches 192.168.89.3 once the router has its route (BGP, through the reflector).
  await waitFor('LAN -> group1-node3', () => lab.clientPing(NODE3_IP), 15000, 200);
  for (const row of rows) {
    const tr = JSON.parse(await trinity10.calicoctlOk(['policy', 'trace', row.a, row.b, '-o', 'json', ...dockerOf(trinity10)])) as TraceJson;
    const d = tr.decidedBy;
    t.diagnostic(`${row.name}: ${tr.verdict} by ${d.text} [${d.chain} on ${d.host}]`);
    assert.equal(tr.verdict, row.verdict, `${row.name}: trace's verdict`);
    assert.match(d.text, row.text, row.name);
    assert.equal(d.host, 'trinity30', `${row.name}: decided on host 3`);
    const rule = row.counter === 'rule' ? `${ruleMatches(d.rule!, 4)[0] || ''}${ruleMatches(d.rule!, 4)[0] ? ' ' : ''}-j RETURN` : row.counter;
    const before = await counted(trinity30, d.chain!, rule);
    const reached = await row.send();
    assert.equal(reached, row.verdict === 'allow', `${row.name}: the packet ${reached ? 'got through' : 'was dropped'}, trace said ${tr.verdict}`);
    const after = await counted(trinity30, d.chain!, rule);
    assert.ok(after > before, `${row.name}: the counter of ${d.chain} rule ${String(rule)} moved (${before} -> ${after})`);
  }

  // --probe on host 3, around the user's own ping from host 1's container.
  // The probe's window starts once it has read the datastore and the counters: ping until it ends.
  let probeDone = false;
  const probing = trinity30.calicoctl(['policy', 'trace', 'group1-node1', 'group1-node3', '--probe', '4', '-o', 'json', ...dockerOf(trinity30)]).finally(() => (probeDone = true));
  while (!probeDone) {
    assert.ok(await trinity10.pingFrom('group1-node1', NODE3_IP));
    await new Promise((r) => setTimeout(r, 200));
  }
  const pr = await probing;
  assert.equal(pr.code, 0, pr.stderr);
  const probed = JSON.parse(pr.stdout) as TraceJson;
  assert.equal(probed.probe?.chain, 'cali-pri-PROF_GROUP1');
  assert.ok(probed.probe.moved.some((m) => /--match-set cali4-tag-PROF_GROUP1 src -j RETURN/.test(m.rule) && m.packets >= 1), JSON.stringify(probed.probe));

  // endpoint show on host 1 for a container of host 3: where it lives and the route there.
  const away = await trinity10.calicoctlOk(['endpoint', 'show', 'group1-node3', ...dockerOf(trinity10)]);
  t.diagnostic(away);
  assert.match(away, /^Container: +group1-node3 \([0-9a-f]{64}\)$/m, 'the name the proxy recorded');
  assert.match(away, /^Host: +trinity30$/m);
  assert.match(away, /^Addresses: +192\.168\.89\.3\/32(, [0-9a-f:]+\/128)?$/m);
  assert.match(away, /^Profiles: +PROF_GROUP1$/m);
  assert.match(away, new RegExp(`^Route: +from trinity10: 192\\.168\\.89\\.3 via ${lanIp('trinity30').replace(/\./g, '\\.')} dev \\S+`, 'm'));
  assert.match(away, /on host trinity30 only/);
  // On host 3: the kernel state too.
  const home = await trinity30.calicoctlOk(['endpoint', 'show', 'group1-node3', ...dockerOf(trinity30)]);
  t.diagnostic(home);
  assert.match(home, /^Route: +from trinity30: 192\.168\.89\.3 dev cali[0-9a-f]{11}/m);
  // Its class (PROF_GROUP1 alone): the class's dispatch rules and chains, and its own pair in the class's set, counted.
  assert.match(home, /dispatch cali-from-wl-dispatch: -m set --match-set cali4-ep-PROF_GROUP1 src,src -g cali-fc-PROF_GROUP1 +\[\d+ packets, its class's\]/);
  assert.match(home, /dispatch cali-to-wl-dispatch: -m set --match-set cali4-ep-PROF_GROUP1 dst,dst -g cali-tc-PROF_GROUP1 +\[[1-9]\d* packets, its class's\]/);
  assert.match(home, /set cali4-ep-PROF_GROUP1: holds 192\.168\.89\.3,cali[0-9a-f]{11} +\[[1-9]\d* packets\]/);
  assert.match(home, /chain cali-fc-PROF_GROUP1: present, \d+ rules/);
  assert.match(home, /chain cali-tc-PROF_GROUP1: present, \d+ rules/);
  assert.match(home, /set cali4-tag-PROF_GROUP1: member/);
  const list = JSON.parse(await trinity10.calicoctlOk(['endpoint', 'show', '--all', '-o', 'json', ...dockerOf(trinity10)])) as { host: string; name?: string }[];
  assert.deepEqual(list.filter((e) => e.host === 'trinity30').map((e) => e.name).sort(), ['group1-node3', 'plain-node3']);
});
