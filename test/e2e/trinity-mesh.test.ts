// Three hosts in the node-to-node mesh (no route reflector), real BIRD, real
// dockerds (FORWARD DROP), real traffic: containers on each host reach the
// others; a new container is reachable from another host within 2 s of
// `docker run` returning; pool, peer and AS changes reach BIRD's running
// config within 2 s without restarting sessions that did not change; a
// node killed with SIGKILL leaves its containers reachable and an
// established cross-host stream intact across its return; then, with the
// router as route reflector, a host taken off the LAN has its routes
// withdrawn from the others and from the router within the hold time.
// The upgrade procedure (docs/operator-guide.md) runs here too: the node
// stopped and started on one host under a cross-host stream and a ping.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, sleep, teardownAll, waitFor } from '../harness';
import { bgpSessions, parseBirdProtocols, BgpSession } from '../../src/bgp/status';
import { HOST_NAMES, HostName, ROUTER_IP, TrinityHost, TrinityLab, firstReply, lanIp, percentile, startTrinityLab } from './trinity-lab';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd, BIRD)';

const POOL = '10.77.0.0/16';
let lab: TrinityLab;
let h: Record<HostName, TrinityHost>;

async function sessions(host: TrinityHost): Promise<BgpSession[]> {
  const r = await host.birdc(['show', 'protocols', 'all']);
  return r.code === 0 ? bgpSessions(parseBirdProtocols(r.stdout)) : [];
}

async function meshUp(host: TrinityHost, n = 2): Promise<BgpSession[]> {
  return waitFor(`${host.name}'s ${n} BGP sessions established`, async () => {
    const s = await sessions(host);
    return s.filter((x) => x.established).length >= n && s;
  }, 30000, 200);
}

async function containerIp(host: TrinityHost, name: string): Promise<string> {
  const out = await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name]);
  const ip = out.trim();
  assert.match(ip, /^10\.77\./, `${name} on ${host.name} has an address of the pool`);
  return ip;
}

before(async () => {
  if (skip) return;
  const t0 = Date.now();
  lab = await startTrinityLab();
  console.log(`lab up in ${Date.now() - t0} ms`);
  h = lab.hosts;
  // The pool first: the nodes then create no default pools.
  await h.trinity10.calicoctlOk(['pool', 'add', POOL]);
  for (const n of HOST_NAMES) await h[n].startNode();
  for (const n of HOST_NAMES) await meshUp(h[n]);
  console.log(`nodes up, mesh established, ${Date.now() - t0} ms after start`);
});

test('mesh: a container on each host pings the two others', { skip }, async (t) => {
  const ips = {} as Record<HostName, string>;
  for (const n of HOST_NAMES) {
    await h[n].dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', `m-${n}`, lab.image, 'sleep', '3600']);
    const t0 = Date.now();
    ips[n] = await containerIp(h[n], `m-${n}`);
    if (n === 'trinity30') {
      // trinity30's first container: its block is claimed now, and must be announced by BGP.
      await firstReply(await h.trinity10.containerNetns('m-trinity10'), ips[n], 5000);
      const line = `first container on trinity30 (a newly claimed block, announced by BGP): reachable from trinity10 ${Date.now() - t0} ms after docker run returned`;
      t.diagnostic(line);
      console.log(line);
    }
  }
  for (const from of HOST_NAMES) {
    for (const to of HOST_NAMES) {
      if (from === to) continue;
      // Each host's first block is announced once it is claimed: give BGP its moment.
      await waitFor(`m-${from} -> m-${to} (${ips[to]})`, () => h[from].pingFrom(`m-${from}`, ips[to]), 10000, 100);
    }
  }
  // The routes came by BGP, next hop the container's own host.
  const routes = (await h.trinity10.exec('ip', ['route', 'show', 'proto', 'bird'])).stdout;
  assert.match(routes, new RegExp(`10\\.77\\.\\d+\\.\\d+/26 via ${lanIp('trinity20').replace(/\./g, '\\.')}`), routes);
  assert.match(routes, new RegExp(`10\\.77\\.\\d+\\.\\d+/26 via ${lanIp('trinity30').replace(/\./g, '\\.')}`), routes);
});

test('mesh: a new container on trinity30 is reachable from trinity10 within 2 s of docker run returning (20 runs)', { skip }, async (t) => {
  const ms: number[] = [];
  // From m-trinity10's own network namespace (no docker exec in the measured time).
  const from = await h.trinity10.containerNetns('m-trinity10');
  for (let i = 0; i < 20; i++) {
    const name = `lat-${i}`;
    await h.trinity30.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', name, lab.image, 'sleep', '3600']);
    const t0 = Date.now();
    // The address as docker inspect shows it (part of the measured time).
    const ip = await containerIp(h.trinity30, name);
    await firstReply(from, ip, 5000);
    ms.push(Date.now() - t0);
  }
  const line = `docker run returned -> first ping reply from trinity10: p50 ${percentile(ms, 50)} ms, p99 ${percentile(ms, 99)} ms, max ${Math.max(...ms)} ms over ${ms.length} runs`;
  t.diagnostic(line);
  console.log(line);
  assert.ok(percentile(ms, 99) <= 2000, line);
  for (let i = 0; i < 20; i++) await h.trinity30.docker(['rm', '-f', `lat-${i}`]);
});

/** The Since of each established session: a session that restarted has a new one. */
async function since(host: TrinityHost): Promise<Map<string, string>> {
  return new Map((await sessions(host)).map((s) => [s.name, `${s.state} ${s.since}`]));
}

async function lastReconfig(host: TrinityHost): Promise<string> {
  const r = await host.birdc(['show', 'status']);
  return /Last reconfiguration on (.*)/.exec(r.stdout)?.[1] ?? '';
}

test('pools, peers and AS reach BIRD\'s running config within 2 s; unchanged sessions stay up', { skip }, async (t) => {
  const h10 = h.trinity10;
  const mesh = [...(await since(h10)).keys()].filter((n) => n.startsWith('Mesh_'));
  assert.equal(mesh.length, 2);
  const before = await since(h10);

  // A pool: the filters change (soft reconfiguration), the sessions stay.
  const reconf = await lastReconfig(h10);
  await h10.calicoctlOk(['pool', 'add', '10.78.0.0/16']);
  // From the moment the datastore has it (calicoctl returned).
  let t0 = Date.now();
  await waitFor('the new pool in the running config', async () => (await lastReconfig(h10)) !== reconf, 2000, 20);
  const poolMs = Date.now() - t0;
  // The running config holds it: BIRD's own view of the import filter.
  const shown = await h10.birdc(['show', 'route', 'filter', 'calico_import_v4', 'count']);
  assert.equal(shown.code, 0, shown.stdout);
  assert.deepEqual(await since(h10), before, 'a pool change restarts no session');

  // A peer of this host (beside the mesh): a new protocol, the mesh untouched.
  await h10.calicoctlOk(['node', 'bgppeer', 'add', '198.18.0.99', 'as', '64600']);
  t0 = Date.now();
  await waitFor('Node_198_18_0_99 in BIRD', async () => (await since(h10)).has('Node_198_18_0_99'), 2000, 20);
  const peerMs = Date.now() - t0;
  for (const n of mesh) assert.equal((await since(h10)).get(n), before.get(n), `${n} unchanged by a new node peer`);
  await h10.calicoctlOk(['node', 'bgppeer', 'remove', '198.18.0.99']);
  await waitFor('Node_198_18_0_99 gone', async () => !(await since(h10)).has('Node_198_18_0_99'), 2000, 20);
  for (const n of mesh) assert.equal((await since(h10)).get(n), before.get(n), `${n} unchanged by a node peer removed`);

  // The global AS: every session's local AS changes (they restart: they must).
  await h10.calicoctlOk(['bgp', 'default-node-as', '64512']);
  t0 = Date.now();
  await waitFor('local AS 64512 in BIRD', async () => {
    const r = await h10.birdc(['show', 'protocols', 'all', mesh[0]!]);
    return /Local AS:\s+64512/.test(r.stdout);
  }, 2000, 20);
  const asMs = Date.now() - t0;
  await h10.calicoctlOk(['bgp', 'default-node-as', '64511']);
  for (const n of HOST_NAMES) await meshUp(h[n]);
  const line = `reached BIRD's running config after: pool ${poolMs} ms, node peer ${peerMs} ms, AS ${asMs} ms`;
  t.diagnostic(line);
  console.log(line);
  await h10.calicoctlOk(['pool', 'remove', '10.78.0.0/16']);
});

test('a node killed with SIGKILL: its containers stay reachable; its return breaks no established stream', { skip }, async () => {
  const h10 = h.trinity10;
  const h20 = h.trinity20;
  await h20.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'srv', lab.image, 'sh', '-c', 'sleep 100000 | nc -l -p 7000 > /tmp/got']);
  const srvIp = await containerIp(h20, 'srv');
  await waitFor('srv reachable', () => h10.pingFrom('m-trinity10', srvIp), 10000, 100);
  // One TCP stream from trinity10 to trinity20: a line every 100 ms.
  await h10.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'cli', lab.image, 'sh', '-c', `i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done | nc ${srvIp} 7000; echo nc-exited > /tmp/end`]);
  const lines = async () => (await h20.direct(['exec', 'srv', 'cat', '/tmp/got'])).stdout.trim().split('\n').filter(Boolean).map(Number);
  await waitFor('the stream flowing', async () => (await lines()).length > 5, 10000, 100);

  await h20.killNode();
  const downAt = (await lines()).length;
  // The node is gone; its BIRD and the kernel routes are not: traffic goes on.
  for (let i = 0; i < 3; i++) {
    assert.ok(await h10.pingFrom('m-trinity10', srvIp), 'srv reachable while its node is dead');
    await sleep(300);
  }
  await h20.startNode();
  await meshUp(h20);
  await sleep(3000);
  const got = await lines();
  assert.ok(got.length > downAt + 20, `the stream kept flowing across the node's return (${downAt} -> ${got.length} lines)`);
  assert.deepEqual(got, got.map((_, i) => i), 'no line lost or repeated');
  const end = await h10.docker(['exec', 'cli', 'cat', '/tmp/end']);
  assert.notEqual(end.code, 0, 'the client nc still runs');
  assert.ok(await h10.pingFrom('m-trinity10', srvIp));
  const log = h20.nodeLog(200);
  assert.match(log, /killing a BIRD left running by an earlier node/, 'the new node replaced the orphaned BIRD');
});

/** A container's address, MAC and Docker endpoint on each network. */
const NETWORK_FACTS = '{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}} {{$e.MacAddress}} {{$e.EndpointID}};{{end}}';

/** Endpoint records and IPAM (addresses, blocks, handles): key -> value and its etcd mod revision. */
async function addressRecords(host: TrinityHost): Promise<Map<string, string>> {
  const r = await host.exec('etcdctl', ['get', '/calico/', '--prefix', '-w', 'json'], { timeoutMs: 10000 });
  assert.equal(r.code, 0, r.stderr);
  const kvs = (JSON.parse(r.stdout) as { kvs?: { key: string; value: string; mod_revision: number }[] }).kvs ?? [];
  const out = new Map<string, string>();
  for (const kv of kvs) {
    const key = Buffer.from(kv.key, 'base64').toString();
    if (/^\/calico\/v1\/host\/[^/]+\/workload\//.test(key) || key.startsWith('/calico/ipam/v2/')) {
      out.set(key, `rev ${kv.mod_revision} ${Buffer.from(kv.value, 'base64').toString()}`);
    }
  }
  return out;
}

test('upgrade: the node stopped (SIGTERM, as systemctl stop) and started again breaks no cross-host nc stream and loses no ping; no address or endpoint record changes', { skip }, async (t) => {
  const h10 = h.trinity10;
  const h20 = h.trinity20;
  // `calicoctl node stop` is not the upgrade path: with containers on the host it refuses (and --force would unregister the host and remove its iptables state).
  const refused = await h20.calicoctl(['node', 'stop', '--state-dir', h20.stateDir]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /active endpoints so can't be stopped/);

  await h20.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'usrv', lab.image, 'sh', '-c', 'sleep 100000 | nc -l -p 7001 > /tmp/got']);
  const srvIp = await containerIp(h20, 'usrv');
  await waitFor('usrv reachable', () => h10.pingFrom('m-trinity10', srvIp), 10000, 100);
  await h10.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'ucli', lab.image, 'sh', '-c', `i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done | nc ${srvIp} 7001; echo nc-exited > /tmp/end`]);
  const lines = async () => (await h20.direct(['exec', 'usrv', 'cat', '/tmp/got'])).stdout.trim().split('\n').filter(Boolean).map(Number);
  await waitFor('the stream flowing', async () => (await lines()).length > 5, 10000, 100);
  // A ping every 200 ms from trinity30 to the server on trinity20, across the whole upgrade.
  await h.trinity30.dockerOk(['exec', '-d', 'm-trinity30', 'sh', '-c', `ping -i 0.2 ${srvIp} > /tmp/uping 2>&1`]);
  const pings = async () => [...(await h.trinity30.direct(['exec', 'm-trinity30', 'cat', '/tmp/uping'])).stdout.matchAll(/seq=(\d+)/g)].map((m) => Number(m[1]));
  await waitFor('pings answered', async () => (await pings()).length > 3, 10000, 100);
  const recordsBefore = await addressRecords(h10);
  const addrBefore = await h20.direct(['inspect', '-f', NETWORK_FACTS, 'usrv']);

  const t0 = Date.now();
  await h20.stopNode();
  const stoppedAt = { lines: (await lines()).length, pings: Math.max(...(await pings())) };
  // (Here the operator installs the new package.) The routes and rules stay while no node runs.
  assert.match((await h10.exec('ip', ['route', 'show', 'proto', 'bird'])).stdout, new RegExp(`via ${lanIp('trinity20').replace(/\./g, '\\.')}`), 'trinity10 still routes to trinity20\'s block');
  await h20.startNode();
  await meshUp(h20);
  const downMs = Date.now() - t0;
  await waitFor('the stream and the pings going on after the start', async () => (await lines()).length > stoppedAt.lines + 20 && Math.max(...(await pings())) > stoppedAt.pings + 10, 15000, 200);

  const got = await lines();
  assert.deepEqual(got, got.map((_, i) => i), 'no line of the stream lost or repeated');
  const end = await h10.docker(['exec', 'ucli', 'cat', '/tmp/end']);
  assert.notEqual(end.code, 0, 'the client nc still runs');
  await h.trinity30.direct(['exec', 'm-trinity30', 'pkill', 'ping']);
  const seqs = await pings();
  const lost = seqs.length ? seqs[seqs.length - 1]! + 1 - new Set(seqs).size : 0;
  const line = `upgrade (node stopped and started on trinity20, ${downMs} ms without a node): ${got.length} stream lines intact, ${seqs.length} pings answered, ${lost} lost`;
  t.diagnostic(line);
  console.log(line);
  assert.equal(lost, 0, line);
  assert.deepEqual(await addressRecords(h10), recordsBefore, 'no address or endpoint record changed');
  assert.match(addrBefore.stdout, /^calico 10\.77\.\S+ \S+ [0-9a-f]{64};/);
  assert.equal((await h20.direct(['inspect', '-f', NETWORK_FACTS, 'usrv'])).stdout, addrBefore.stdout, 'the container kept its address and Docker endpoint');
  for (const c of ['ucli']) await h10.docker(['rm', '-f', c]);
  await h20.docker(['rm', '-f', 'usrv']);
});

test('route reflector, then a host taken off the LAN: its routes are withdrawn from the others and the router within the hold time', { skip }, async (t) => {
  const h10 = h.trinity10;
  await h10.calicoctlOk(['bgppeer', 'rr', 'add', ROUTER_IP]);
  for (const n of HOST_NAMES) {
    await waitFor(`${n} peers with the router only`, async () => {
      const s = await sessions(h[n]);
      return s.length === 1 && s[0]!.type === 'rr' && s[0]!.established;
    }, 20000, 200);
  }
  const ip30 = await containerIp(h.trinity30, 'm-trinity30');
  await waitFor('m-trinity10 -> m-trinity30 through reflected routes', () => h10.pingFrom('m-trinity10', ip30), 10000, 200);
  const via30 = new RegExp(`via ${lanIp('trinity30').replace(/\./g, '\\.')}`);
  assert.match((await lab.routerBirdc(['show', 'route'])).stdout, via30);

  await h.trinity30.lanLink(false);
  const t0 = Date.now();
  await waitFor('trinity30\'s routes gone from trinity10 and the router', async () => {
    const k = (await h10.exec('ip', ['route', 'show', 'proto', 'bird'])).stdout;
    const r = (await lab.routerBirdc(['show', 'route'])).stdout;
    return !via30.test(k) && !via30.test(r);
  }, 20000, 200);
  const ms = Date.now() - t0;
  t.diagnostic(`trinity30's routes withdrawn ${ms} ms after its LAN link went down (hold time 9 s)`);
  console.log(`host taken away: routes withdrawn after ${ms} ms (hold time 9 s)`);
  assert.ok(ms <= 9000 + 3000, `withdrawn after ${ms} ms`);
  assert.ok(!(await (h.trinity20.pingFrom('m-trinity20', ip30))), 'trinity30 unreachable');

  await h.trinity30.lanLink(true);
  await waitFor('trinity30 back', () => h10.pingFrom('m-trinity10', ip30), 30000, 300);
  await h10.calicoctlOk(['bgppeer', 'rr', 'remove', ROUTER_IP]);
});
