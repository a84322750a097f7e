// Two hosts (network namespaces on one veth), each with its own supervised
// BIRD on the rendered config: the mesh session comes up, each kernel gets
// the other's block aggregate and borrowed address by BGP, a bad config is
// refused while the old one keeps running, a killed BIRD comes back, and a
// stop leaves the routes in both kernels.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { teardownAll, Netns, vethLink, makeRunDir, onTeardown, removeTree, waitFor, isRoot } from '../harness';
import { BirdConfigError, BirdSupervisor } from '../../src/bgp/bird';
import { renderBirdConfig } from '../../src/bgp/render';
import { bgpSessions, parseBirdProtocols } from '../../src/bgp/status';
import type { BirdInput, HostRoutes } from '../../src/bgp/types';

after(teardownAll);

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

const hosts = [
  { host: 'hosta', ip: '10.99.0.1', ip6: 'fd99::1' },
  { host: 'hostb', ip: '10.99.0.2', ip6: 'fd99::2' },
];
const pools = [
  { cidr: '10.200.0.0/16', family: 4 as const },
  { cidr: 'fd80::/64', family: 6 as const },
];
const BLOCKS: Record<string, string[]> = {
  hosta: ['10.200.0.0/26', 'fd80::/122'],
  hostb: ['10.200.0.64/26', 'fd80::40/122'],
};

/** What each host holds (A borrowed 10.200.0.70 and fd80::45 from B's blocks). */
const HELD: Record<string, HostRoutes> = {
  hosta: { blocks: BLOCKS.hosta!, borrowed: ['10.200.0.70/32', 'fd80::45/128'] },
  hostb: { blocks: BLOCKS.hostb!, borrowed: [] },
};

function input(hostname: string, held = HELD): BirdInput {
  return { hostname, hosts, pools, config: { routeReflectors: [], globalPeers: [] }, nodePeers: [], affineBlocks: held[hostname]!.blocks, hostRoutes: held };
}

async function birdRoutes(ns: Netns, family: 4 | 6): Promise<string> {
  return (await ns.ok('ip', [`-${family}`, 'route', 'show', 'proto', 'bird'])).stdout;
}

async function established(sup: BirdSupervisor, name: string): Promise<boolean> {
  const r = await sup.birdcCommand(['show', 'protocols']);
  return bgpSessions(parseBirdProtocols(r.out)).some((s) => s.name === name && s.established);
}

test('two hosts on BIRD: mesh, routes by BGP, refused config, restart after kill -9, stop keeps routes', { skip: !isRoot() }, async () => {
  const a = await Netns.create('cdba');
  const b = await Netns.create('cdbb');
  await vethLink({ side: a, ifName: 'eth0', addr: '10.99.0.1/24' }, { side: b, ifName: 'eth0', addr: '10.99.0.2/24' });
  for (const [ns, ip6] of [[a, 'fd99::1/64'], [b, 'fd99::2/64']] as const) {
    await ns.ok('ip', ['-6', 'addr', 'add', ip6, 'dev', 'eth0', 'nodad']);
    await ns.forwarding();
  }
  // Host A's containers: one inside its own block (covered by the aggregate)
  // and one borrowed from B's block (announced on its own).
  for (const [dev, dest] of [['calitest0', '10.200.0.5/32'], ['calitest1', '10.200.0.70/32'], ['calitest2', 'fd80::45/128']]) {
    // A veth, as the node's real cali interfaces are (no dummy module here).
    await a.ok('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`]);
    await a.ok('ip', ['link', 'set', `${dev}p`, 'up']);
    await a.ok('ip', ['link', 'set', dev, 'up']);
    await a.ok('ip', ['route', 'add', dest, 'dev', dev]);
  }

  const sups: Record<string, BirdSupervisor> = {};
  for (const [name, ns] of [['hosta', a], ['hostb', b]] as const) {
    const dir = await makeRunDir('bird');
    onTeardown(`removing ${dir}`, () => removeTree(dir));
    const sup = new BirdSupervisor({ stateDir: dir, log, wrap: ['nsenter', `--net=${ns.path}`], backoff: { initialMs: 100, maxMs: 1000 } });
    onTeardown(`bird of ${name}`, () => sup.stop({ graceful: false }));
    // The harness sweeps by *.pid under a run dir; BIRD's pid file is one level down.
    onTeardown(`bird pid of ${name}`, () => {
      try {
        process.kill(Number(fs.readFileSync(sup.paths.pidFile, 'utf8')), 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    sups[name] = sup;
  }
  // A config BIRD refuses starts nothing.
  await assert.rejects(sups.hosta!.start('router id 10.99.0.1;\nprotocol bgp {'), (e: Error) => e instanceof BirdConfigError && /syntax error/.test(e.message));
  assert.equal(sups.hosta!.status().running, false);
  assert.equal(fs.existsSync(sups.hosta!.paths.config), false);
  await Promise.all(['hosta', 'hostb'].map((h) => sups[h]!.start(renderBirdConfig(input(h)))));
  const [sa, sb] = [sups.hosta!, sups.hostb!];

  await waitFor('the IPv4 and IPv6 mesh sessions', async () => (await established(sa, 'Mesh_10_99_0_2')) && (await established(sa, 'Mesh_fd99__2')), 30_000, 100);

  // Each kernel has the other's routes, via the other host, learned by BIRD.
  const bRoutes = await waitFor('A\'s routes in B\'s kernel', async () => {
    const r = await birdRoutes(b, 4);
    return /10\.200\.0\.0\/26 via 10\.99\.0\.1/.test(r) && /10\.200\.0\.70 via 10\.99\.0\.1/.test(r) ? r : undefined;
  }, 15_000, 100);
  assert.doesNotMatch(bRoutes, /10\.200\.0\.5 /, 'a route inside A\'s own block is covered by the aggregate');
  await waitFor('A\'s IPv6 routes in B\'s kernel', async () => {
    const r = await birdRoutes(b, 6);
    return /fd80::\/122 via fd99::1/.test(r) && /fd80::45 via fd99::1/.test(r);
  }, 15_000, 100);
  await waitFor('B\'s block in A\'s kernel', async () => /10\.200\.0\.64\/26 via 10\.99\.0\.2/.test(await birdRoutes(a, 4)), 15_000, 100);
  // A's own blocks are blackholes in its kernel (unallocated addresses drop here).
  assert.match((await a.ok('ip', ['route', 'show', 'proto', 'bird', 'type', 'blackhole'])).stdout, /blackhole 10\.200\.0\.0\/26/);

  // The birdc output the status parser is tested on (test/unit/bgp-status.test.ts).
  if (process.env.CAPTURE_BIRDC) {
    for (const args of [['show', 'protocols'], ['show', 'protocols', 'all']]) {
      fs.writeFileSync(path.join(process.env.CAPTURE_BIRDC, args.join('_') + '.txt'), (await sa.birdcCommand(args)).out);
    }
  }

  // A config BIRD refuses is not loaded: the running one keeps going.
  const pidBefore = sa.status().pid;
  const goodConf = fs.readFileSync(sa.paths.config, 'utf8');
  const bad = await sa.apply(goodConf.replace('router id 10.99.0.1;', 'router id 10.99.0.1;\nprotocol bgp Broken { neighbor ; }'));
  assert.equal(bad.loaded, false);
  assert.match(bad.error ?? '', /^BIRD refused the new config \(not loaded; the previous one keeps running\): .*bird\.conf:4:\d+ Local AS number must be set/);
  assert.match(sa.status().configError ?? '', /Local AS number must be set/);
  assert.equal(fs.readFileSync(sa.paths.config, 'utf8'), goodConf);
  assert.equal(sa.status().pid, pidBefore);
  assert.ok(await established(sa, 'Mesh_10_99_0_2'));
  // Asking for what already runs clears the error.
  assert.deepEqual(await sa.apply(goodConf), { loaded: false });
  assert.equal(sa.status().configError, undefined);

  // A good change loads without restarting BIRD or the sessions. A claims a
  // block: A announces it at once, but B imports from A only what B knows A
  // holds, so it stays out of B's kernel until B's filter says the block is
  // A's; then B asks A again (route refresh) and gets it, session up all along.
  const claimed = { ...HELD, hosta: { ...HELD.hosta!, blocks: [...BLOCKS.hosta!, '10.200.0.128/26'] } };
  const more = await sa.apply(renderBirdConfig(input('hosta', claimed)));
  assert.deepEqual(more, { loaded: true });
  assert.equal(sa.status().configError, undefined);
  await waitFor('A announcing the new block to B', async () => /10\.200\.0\.128\/26/.test((await sa.birdcCommand(['show', 'route', 'export', 'Mesh_10_99_0_2'])).out), 5000, 20);
  await new Promise((r) => setTimeout(r, 500));
  assert.doesNotMatch(await birdRoutes(b, 4), /10\.200\.0\.128\/26/, 'not imported before B knows the block is A\'s');
  const bSince = (await sb.birdcCommand(['show', 'protocols', 'Mesh_10_99_0_1'])).out;
  const t0 = Date.now();
  assert.deepEqual(await sb.apply(renderBirdConfig(input('hostb', claimed))), { loaded: true });
  await waitFor('the new block in B\'s kernel', async () => /10\.200\.0\.128\/26 via 10\.99\.0\.1/.test(await birdRoutes(b, 4)), 5000, 20);
  console.log(`a block claimed after the session was up: in the peer's kernel ${Date.now() - t0} ms after the peer's filter was loaded`);
  assert.equal((await sb.birdcCommand(['show', 'protocols', 'Mesh_10_99_0_1'])).out, bSince, 'B\'s session to A was not restarted');
  assert.equal(sa.status().pid, pidBefore);
  const info = (await sa.birdcCommand(['show', 'protocols', 'Mesh_10_99_0_2'])).out;
  assert.match(info, /Established/);

  // kill -9: the supervisor starts BIRD again and the session comes back.
  process.kill(pidBefore!, 'SIGKILL');
  await waitFor('BIRD restarted', async () => sa.status().restarts === 1 && sa.status().pid !== undefined && sa.status().pid !== pidBefore, 10_000, 50);
  await waitFor('the session after the restart', () => established(sa, 'Mesh_10_99_0_2'), 30_000, 100);
  // Its graceful restart recovery ends once the peer is back; then B holds
  // A's routes fresh, including the block added just before the kill.
  await waitFor('the restarted BIRD\'s graceful restart recovery', async () => !/recovery in progress/i.test((await sa.birdcCommand(['show', 'status'])).out), 30_000, 100);
  await waitFor('A\'s latest routes in B\'s kernel after the restart', async () => /10\.200\.0\.128\/26 via 10\.99\.0\.1/.test(await birdRoutes(b, 4)), 10_000, 50);

  // Stop (graceful): BIRD exits within the bound; A keeps B's routes
  // (persist) and B keeps A's (graceful restart: stale, not withdrawn).
  const s0 = Date.now();
  await sa.stop();
  assert.ok(Date.now() - s0 < 3000, `stop took ${Date.now() - s0} ms`);
  assert.equal(sa.status().running, false);
  assert.match(await birdRoutes(a, 4), /10\.200\.0\.64\/26 via 10\.99\.0\.2/);
  assert.match(await birdRoutes(b, 4), /10\.200\.0\.0\/26 via 10\.99\.0\.1/);
  // Not restarted after a stop.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(sa.status().running, false);
  await sb.stop();
});
