import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import Dockerode from 'dockerode';
import pino from 'pino';
import { EtcdCluster, PrivateDockerd, ensureTestImage, isRoot, run, runOk, teardownAll, onTeardown, waitFor } from '../harness';
import { Datastore, EndpointStore, PoolStore } from '../../src/datastore';
import { EndpointLifecycle } from '../../src/endpoints/lifecycle';
import { EndpointRegistry } from '../../src/endpoints/registry';
import { ReservationBook } from '../../src/endpoints/reservations';
import { EtcdIpam } from '../../src/ipam/ipam';
import { DockerPlugin } from '../../src/plugin/docker-plugin';
import { calicoNetworkName, HANDLE_LABEL } from '../../src/names';
import { hostIfName } from '../../src/names';

// The plugin on a real dockerd, a real etcd and the real IPAM: dockerd finds
// the socket by name, calls the drivers at container start, and the container
// has its network at its first instruction.

const skip = !isRoot() && 'needs root (dockerd, veths)';
const NAME = `cdt${process.pid}p`; // plugin name, unique on this machine
const POOL4 = '10.231.0.0/16';
const POOL6 = 'fd31:231::/64';
// Host addresses the containers ping: on a link of the test's own, so
// no packet leaves the machine.
const DUMMY = `cdtd${process.pid % 100000}`;
const HOST4 = '198.18.231.1';
const HOST6 = 'fd31:232::1';
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

let d: PrivateDockerd;
let img: string;
let ipam: EtcdIpam;
let plugin: DockerPlugin;
const registry = new EndpointRegistry();
const net = calicoNetworkName();

/** Host ends made by this test's plugin (other tests on the machine have their own). */
async function caliLinks(): Promise<string[]> {
  const links = JSON.parse((await runOk('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string; ifalias?: string }[];
  return links.filter((l) => l.ifname.startsWith('cali') && l.ifalias === `calico-docker:${NAME}`).map((l) => l.ifname);
}

async function inspect(c: string): Promise<{ ep: string; ip: string; ip6: string; mac: string }> {
  const r = await d.docker(['inspect', '-f', `{{json .NetworkSettings.Networks.${net}}}`, c]);
  const n = JSON.parse(r.stdout) as { EndpointID: string; IPAddress: string; GlobalIPv6Address: string; MacAddress: string };
  return { ep: n.EndpointID, ip: n.IPAddress, ip6: n.GlobalIPv6Address, mac: n.MacAddress };
}

function inPool4(a: string): boolean {
  return a.startsWith('10.231.');
}

/** Veths a killed earlier run of this file left (its plugin name carries its pid). */
async function removeDeadRunsLinks(): Promise<void> {
  const links = JSON.parse((await runOk('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string; ifalias?: string }[];
  for (const l of links) {
    const pid = Number(/^calico-docker:cdt(\d+)p$/.exec(l.ifalias ?? '')?.[1]);
    if (!pid || pid === process.pid) continue;
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) await run('ip', ['link', 'del', l.ifname]);
  }
}

/**
 * This file's veths live in the root network namespace, where a calicoctl
 * node run on this machine may have left its filter hooks: a stopped node
 * keeps them (fail-closed, by design), and they drop the traffic of every
 * cali* interface, these included. Say so instead of failing five tests
 * with ping timeouts.
 */
async function refuseLeftoverNodeRules(): Promise<void> {
  for (const save of ['iptables-save', 'ip6tables-save']) {
    const r = await run(save, ['-t', 'filter']);
    const hooks = r.stdout.split('\n').filter((l) => /^-A (FORWARD|INPUT|OUTPUT) .*-j cali-/.test(l));
    if (hooks.length) {
      throw new Error(
        `the root network namespace has a calicoctl node's filter hooks (${save}: ${hooks[0]}), left by a node run on this machine ` +
          `(a stopped node keeps them); they drop this test's cali* veths' traffic. Remove them with: calicoctl node stop --force`,
      );
    }
  }
}

before(async () => {
  if (skip) return;
  await refuseLeftoverNodeRules();
  await removeDeadRunsLinks();
  const [etcd, dockerd] = await Promise.all([EtcdCluster.start({ size: 1 }), PrivateDockerd.start()]);
  d = dockerd;
  img = await ensureTestImage(d);
  const ds = new Datastore({ endpoints: etcd.endpoints, log });
  onTeardown('datastore client', () => ds.close());
  const pools = new PoolStore(ds);
  await pools.add(POOL4);
  await pools.add(POOL6);
  ipam = new EtcdIpam(ds, { log });
  await run('ip', ['link', 'del', DUMMY]);
  // A veth pair, not a dummy: some kernels here lack the dummy module.
  await runOk('ip', ['link', 'add', DUMMY, 'type', 'veth', 'peer', 'name', `${DUMMY}x`]);
  await runOk('ip', ['link', 'set', `${DUMMY}x`, 'up']);
  onTeardown(`dummy ${DUMMY}`, async () => void (await run('ip', ['link', 'del', DUMMY])));
  await runOk('ip', ['addr', 'add', `${HOST4}/32`, 'dev', DUMMY]);
  await runOk('ip', ['addr', 'add', `${HOST6}/128`, 'dev', DUMMY, 'nodad']);
  await runOk('ip', ['link', 'set', DUMMY, 'up']);
  const lifecycle = new EndpointLifecycle({ host: 'h4a-host', store: new EndpointStore(ds), registry, reservations: new ReservationBook(), ipam, log });
  plugin = new DockerPlugin({
    pluginName: NAME,
    hostname: 'h4a-host',
    ipam,
    registry,
    lifecycle,
    docker: new Dockerode({ socketPath: d.socket }),
    hasIpv6Pool: async () => (await pools.list(6)).length > 0,
    log,
  });
  onTeardown('plugin', () => plugin.stop());
  // Containers go before the plugin stops (teardown runs in reverse).
  onTeardown('containers', async () => {
    const ids = (await d.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await d.docker(['rm', '-f', ...ids]);
  });
  await plugin.start();
});
after(teardownAll);

test('node start creates the calico network on our drivers, whole address space, IPv6 with a v6 pool', { skip }, async () => {
  const n = JSON.parse((await d.docker(['network', 'inspect', net])).stdout)[0];
  assert.equal(n.Driver, NAME);
  assert.equal(n.IPAM.Driver, NAME);
  assert.equal(n.EnableIPv6, true);
  assert.deepEqual(n.IPAM.Config.map((c: { Subnet: string }) => c.Subnet).sort(), ['0.0.0.0/0', '::/0']);
  assert.ok(fs.existsSync(`/run/docker/plugins/${NAME}.sock`));
  // A second start of the node finds the network and leaves it alone.
  await plugin.stop();
  await plugin.start();
  const again = JSON.parse((await d.docker(['network', 'inspect', net])).stdout)[0];
  assert.equal(again.Id, n.Id);
});

test('the network is there at the first instruction, 50 of 50 runs; nothing left afterwards', { skip }, async () => {
  for (let i = 0; i < 50; i++) {
    const r = await d.docker(['run', '--rm', '--net', net, img, 'sh', '-c', 'ip -4 addr show eth0; ip -4 route']);
    assert.equal(r.code, 0, `run ${i}: ${r.stderr}`);
    const m = /inet (\d+\.\d+\.\d+\.\d+)\/32 /.exec(r.stdout);
    assert.ok(m && inPool4(m[1]), `run ${i}: no pool /32 on eth0:\n${r.stdout}`);
    assert.match(r.stdout, /default via 169\.254\.1\.1 dev eth0/, `run ${i}`);
  }
  await waitFor('cali links gone', async () => (await caliLinks()).length === 0, 10000);
  // Releases run after Docker got its answer (off the teardown path): poll.
  await waitFor('auto addresses released at --rm', async () => (await ipam.listByHost('h4a-host')).length === 0, 10000);
});

test('20 containers started at once get 20 distinct addresses, each networked at its first instruction', { skip }, async () => {
  const runs = await Promise.all(
    Array.from({ length: 20 }, () => d.docker(['run', '--rm', '--net', net, img, 'sh', '-c', `ip -4 addr show eth0 && ping -c1 -W2 ${HOST4} >/dev/null`])),
  );
  const addrs = runs.map((r, i) => {
    assert.equal(r.code, 0, `run ${i}: ${r.stdout}${r.stderr}`);
    return /inet (\d+\.\d+\.\d+\.\d+)\/32 /.exec(r.stdout)![1];
  });
  assert.equal(new Set(addrs).size, 20, addrs.join(' '));
  await waitFor('their veths gone', async () => (await caliLinks()).length === 0, 10000);
});

test('host side: cali veth with ee:ee MAC, proxy ARP, /32 route; ping both ways at the first instruction', { skip }, async () => {
  const r = await d.docker(['run', '--rm', '--net', net, img, 'ping', '-c1', '-W2', HOST4]);
  assert.equal(r.code, 0, `container -> host: ${r.stdout}${r.stderr}`);
  const r6 = await d.docker(['run', '--rm', '--net', net, img, 'ping', '-c1', '-W2', HOST6]);
  assert.equal(r6.code, 0, `container -> host over IPv6: ${r6.stdout}${r6.stderr}`);

  const c = (await d.docker(['run', '-d', '--net', net, img, 'sleep', '600'])).stdout.trim();
  const i = await inspect(c);
  assert.ok(inPool4(i.ip), i.ip);
  assert.ok(i.ip6.startsWith('fd31:231:'), i.ip6);
  const hostIf = hostIfName(i.ep);
  const link = await runOk('ip', ['-o', 'link', 'show', hostIf]);
  assert.match(link.stdout, /link\/ether ee:ee:ee:ee:ee:ee/);
  const uplink = /\bdev (\S+)/.exec((await runOk('ip', ['-o', '-4', 'route', 'show', 'default'])).stdout)?.[1];
  if (uplink) {
    const mtu = /\bmtu (\d+)/.exec((await runOk('ip', ['-o', 'link', 'show', 'dev', uplink])).stdout)![1];
    assert.match(link.stdout, new RegExp(`mtu ${mtu} `), 'host end has the uplink MTU');
    assert.match((await d.docker(['exec', c, 'ip', '-o', 'link', 'show', 'eth0'])).stdout, new RegExp(`mtu ${mtu} `), 'so has eth0');
  }
  assert.equal(fs.readFileSync(`/proc/sys/net/ipv4/conf/${hostIf}/proxy_arp`, 'utf8').trim(), '1');
  assert.equal(fs.readFileSync(`/proc/sys/net/ipv4/neigh/${hostIf}/proxy_delay`, 'utf8').trim(), '0');
  assert.equal(fs.readFileSync(`/proc/sys/net/ipv6/conf/${hostIf}/proxy_ndp`, 'utf8').trim(), '1');
  assert.equal(fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), '1');
  assert.match((await runOk('ip', ['route', 'show', `${i.ip}/32`])).stdout, new RegExp(`dev ${hostIf} scope link`));
  assert.match((await runOk('ip', ['-6', 'route', 'show', `${i.ip6}/128`])).stdout, new RegExp(`dev ${hostIf}`));
  // busybox-static is a dependency of the project; iputils ping may be missing.
  assert.equal((await run('busybox', ['ping', '-c1', '-W2', i.ip])).code, 0, 'host -> container');
  assert.equal((await run('busybox', ['ping', '-c1', '-W2', i.ip6])).code, 0, 'host -> container over IPv6');
  // What the lifecycle records from at Join.
  const ep = registry.get(i.ep);
  assert.ok(ep, 'endpoint registered');
  assert.equal(ep.name, hostIf);
  assert.equal(ep.mac, i.mac);
  assert.deepEqual([...ep.ipv4_nets, ...ep.ipv6_nets], [`${i.ip}/32`, `${i.ip6}/128`]);
  await d.docker(['rm', '-f', c]);
  assert.equal(registry.get(i.ep), undefined, 'endpoint unregistered at removal');
  await waitFor(`${hostIf} gone`, async () => !(await caliLinks()).includes(hostIf), 10000);
});

test('--ip: explicit address; refused while another container holds it; kept across stop/start', { skip }, async () => {
  const want = '10.231.77.7';
  const a = (await d.docker(['run', '-d', '--name', 'ipa', '--net', net, '--ip', want, img, 'sleep', '600'])).stdout.trim();
  assert.ok(a, 'started');
  assert.equal((await inspect('ipa')).ip, want);
  const owner = await ipam.lookup(want);
  assert.ok(owner?.handle.startsWith('docker-'), `owned by a driver handle, not ${owner?.handle}`);

  const b = await d.docker(['run', '--rm', '--net', net, '--ip', want, img, 'true']);
  assert.notEqual(b.code, 0);
  assert.match(b.stderr, new RegExp(`address ${want.replace(/\./g, '\\.')} belongs to container /?ipa `), b.stderr);

  await d.docker(['stop', '-t', '0', 'ipa']);
  await waitFor('Docker released it at stop', async () => (await ipam.lookup(want)) === undefined, 10000);
  assert.equal((await d.docker(['start', 'ipa'])).code, 0);
  assert.equal((await inspect('ipa')).ip, want);
  const r = await d.docker(['exec', 'ipa', 'ip', '-4', 'addr', 'show', 'eth0']);
  assert.match(r.stdout, new RegExp(`inet ${want.replace(/\./g, '\\.')}/32`));
  await d.docker(['rm', '-f', 'ipa']);
  await waitFor('released at removal', async () => (await ipam.lookup(want)) === undefined, 10000);
});

test('--ip outside every pool is refused with IPAM\'s message', { skip }, async () => {
  const r = await d.docker(['run', '--rm', '--net', net, '--ip', '172.31.250.9', img, 'true']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /calico IPAM: .*172\.31\.250\.9/);
});

test('an address the proxy reserved (resv- handle) is accepted and survives stop, start and removal', { skip }, async () => {
  const handle = `resv-${randomUUID()}`;
  const [alloc] = await ipam.allocate({ handle, host: 'h4a-host', ipv4: 'auto' });
  const c = await d.docker(['run', '-d', '--name', 'resv', '--label', `${HANDLE_LABEL}=${handle}`, '--net', net, '--ip', alloc.address, img, 'sleep', '600']);
  assert.equal(c.code, 0, c.stderr);
  assert.equal((await inspect('resv')).ip, alloc.address);
  await d.docker(['stop', '-t', '0', 'resv']);
  await plugin.settled();
  assert.equal((await ipam.lookup(alloc.address))?.handle, handle, 'a stop keeps the reservation');
  await d.docker(['start', 'resv']);
  assert.equal((await inspect('resv')).ip, alloc.address);
  // Another container asking for the same address while the first runs is refused.
  const dup = await d.docker(['run', '--rm', '--net', net, '--ip', alloc.address, img, 'true']);
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /belongs to container \/?resv /, dup.stderr);
  await d.docker(['rm', '-f', 'resv']);
  await plugin.settled();
  assert.equal((await ipam.lookup(alloc.address))?.handle, handle, 'the reconciler, not Docker, frees a reservation');
  assert.equal(await ipam.releaseByHandle(handle), 1);
});

test('addresses held on another host are refused, whatever their handle, naming that host', { skip }, async () => {
  for (const prefix of ['resv-', 'docker-']) {
    const handle = `${prefix}${randomUUID()}`;
    const [a] = await ipam.allocate({ handle, host: 'other-host', ipv4: 'auto' });
    const r = await d.docker(['run', '--rm', '--net', net, '--ip', a.address, img, 'true']);
    assert.notEqual(r.code, 0, `${prefix} address of another host was accepted`);
    assert.match(r.stderr, /address \S+ (belongs to|is held by) .* on host other-host/, r.stderr);
    await plugin.settled();
    assert.equal((await ipam.lookup(a.address))?.handle, handle, 'still theirs');
    await ipam.releaseByHandle(handle);
  }
});

test('a dockerd restart brings a --restart=always container back with its reserved address and network', { skip }, async () => {
  const handle = `resv-${randomUUID()}`;
  const [alloc] = await ipam.allocate({ handle, host: 'h4a-host', ipv4: 'auto' });
  const c = await d.docker(['run', '-d', '--name', 'always', '--restart=always', '--label', `${HANDLE_LABEL}=${handle}`, '--net', net, '--ip', alloc.address, img, 'sleep', '600']);
  assert.equal(c.code, 0, c.stderr);
  await d.restart();
  await waitFor('container running again', async () => (await d.docker(['inspect', '-f', '{{.State.Running}}', 'always'])).stdout.trim() === 'true', 30000, 200);
  assert.equal((await inspect('always')).ip, alloc.address);
  const r = await d.docker(['exec', 'always', 'ping', '-c1', '-W2', HOST4]);
  assert.equal(r.code, 0, `network after the daemon restart: ${r.stdout}${r.stderr}`);
  // Docker re-reserved its network's gateway and pools at startup; the driver answered.
  await d.docker(['rm', '-f', 'always']);
  await plugin.settled();
  assert.equal((await ipam.lookup(alloc.address))?.handle, handle);
  await ipam.releaseByHandle(handle);
});

test('explicit IPv6 address', { skip }, async () => {
  const want = 'fd31:231::77';
  const r = await d.docker(['run', '--rm', '--net', net, '--ip6', want, img, 'sh', '-c', 'ip -6 addr show eth0; ip -6 route']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /inet6 fd31:231::77\/128/);
  assert.match(r.stdout, /default via fe80::ecee:eeff:feee:eeee dev eth0/);
});

test('a node restart adopts running containers: registered again, removed cleanly', { skip }, async () => {
  const c = (await d.docker(['run', '-d', '--net', net, img, 'sleep', '600'])).stdout.trim();
  const i = await inspect(c);
  await plugin.stop();
  await plugin.start();
  const ep = registry.get(i.ep);
  assert.equal(ep?.name, hostIfName(i.ep));
  assert.deepEqual(ep?.ipv4_nets, [`${i.ip}/32`]);
  assert.equal((await d.docker(['exec', c, 'ping', '-c1', '-W2', HOST4])).code, 0, 'traffic undisturbed');
  await d.docker(['rm', '-f', c]);
  await waitFor('address released', async () => (await ipam.lookup(i.ip)) === undefined, 10000);
  await waitFor('veth gone', async () => !(await caliLinks()).includes(hostIfName(i.ep)), 10000);
});

test('veths of containers removed while the node was down are swept at its next start, and only ours', { skip }, async () => {
  const c = (await d.docker(['run', '-d', '--net', net, img, 'sleep', '600'])).stdout.trim();
  const i = await inspect(c);
  const hostIf = hostIfName(i.ep);
  // Someone else's cali link on the same host (another node in a lab) must survive the sweep.
  const foreign = `cali${String(process.pid % 100000).padStart(5, '0')}f0f0f0`.slice(0, 15);
  await runOk('ip', ['link', 'add', foreign, 'type', 'veth', 'peer', 'name', `ctmp${foreign.slice(4)}`]);
  onTeardown(`link ${foreign}`, async () => void (await run('ip', ['link', 'del', foreign])));
  await runOk('ip', ['link', 'set', foreign, 'alias', 'calico-docker:someone-else']);

  await plugin.stop();
  const rm = await d.docker(['rm', '-f', c]);
  assert.equal(rm.code, 0, `Docker removes the container even with the driver down: ${rm.stderr}`);
  assert.ok((await caliLinks()).includes(hostIf), 'Docker moved the container end back; the pair stayed');
  await plugin.start();
  await plugin.whenNetworkReady();
  assert.ok(!(await caliLinks()).includes(hostIf), 'swept at start');
  assert.equal((await run('ip', ['link', 'show', foreign])).code, 0, 'a link of another owner is left alone');
  // Docker could not tell us to release the address either: the reconciler's GC frees it; here, by hand.
  for (const a of [i.ip, i.ip6]) {
    const leaked = await ipam.lookup(a);
    if (leaked) {
      assert.ok(leaked.handle.startsWith('docker-'), leaked.handle);
      await ipam.releaseByHandle(leaked.handle);
    }
  }
  await run('ip', ['link', 'del', foreign]);
});

test('docker network connect: a container made on another network gets an auto address on calico', { skip }, async () => {
  await d.docker(['network', 'create', '--subnet', '172.29.231.0/24', 'h4aother']);
  const c = (await d.docker(['create', '--net', 'h4aother', img, 'sleep', '600'])).stdout.trim();
  const con = await d.docker(['network', 'connect', net, c]);
  assert.equal(con.code, 0, con.stderr);
  assert.equal((await d.docker(['start', c])).code, 0);
  const i = await inspect(c);
  assert.ok(inPool4(i.ip), i.ip);
  const r = await d.docker(['exec', c, 'ip', '-4', 'addr', 'show']);
  assert.match(r.stdout, new RegExp(`inet ${i.ip.replace(/\./g, '\\.')}/32`));
  assert.match(r.stdout, /inet 172\.29\.231\.\d+\/24/);
  await d.docker(['rm', '-f', c]);
  await d.docker(['network', 'rm', 'h4aother']);
});

test('after every container is gone: no cali link, no driver allocation', { skip }, async () => {
  const ids = (await d.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
  if (ids.length) await d.docker(['rm', '-f', ...ids]);
  await waitFor('no cali links', async () => (await caliLinks()).length === 0, 10000);
  await plugin.settled();
  assert.deepEqual((await ipam.listByHost('h4a-host')).map((a) => `${a.address} ${a.handle}`), [], 'no allocation left');
  assert.equal(registry.list().length, 0);
});
