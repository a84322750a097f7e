import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import pino from 'pino';
import { Netns, isRoot, run, teardownAll } from '../harness';
import { IpBatch } from '../../src/dataplane/ip-batch';
import { containerMac, hostIfName, peerIfName, GATEWAY_V6 } from '../../src/names';

// The dataplane against the real kernel, inside namespaces this test makes:
// the long-lived `ip -batch` runner, and a whole endpoint plumbed on a "host"
// that has no default route, reached from a "container" namespace set up the
// way Docker sets up eth0 after Join.

after(teardownAll);
const skip = !isRoot() && 'needs root (network namespaces)';
const log = pino({ level: 'silent' });

test('ip batch: failures are attributed to their command, later commands still run, jobs finish in order', { skip }, async () => {
  const ns = await Netns.create('cdtb');
  const ip = new IpBatch(log, `ip -n ${ns.name}`);
  try {
    const f = await ip.run(['link add bt1 type veth peer name bt2', 'link set nosuchdev up', 'link set bt1 up']);
    assert.equal(f.length, 1);
    assert.equal(f[0].index, 1);
    assert.equal(f[0].command, 'link set nosuchdev up');
    assert.match(f[0].message, /Cannot find device "nosuchdev"/);
    const link = await ns.ok('ip', ['-o', 'link', 'show', 'bt1']);
    assert.match(link.stdout, /[<,]UP[,>]/, 'the command after the failure ran');

    const many = await Promise.all(Array.from({ length: 30 }, (_, i) => ip.run([`link set bt2 mtu ${1300 + i}`])));
    assert.ok(many.every((x) => x.length === 0));
    assert.match((await ns.ok('ip', ['-o', 'link', 'show', 'bt2'])).stdout, /mtu 1329 /, 'applied in submission order');

    // `ip` exits on a malformed argument: the jobs in flight fail, the next run gets a fresh process.
    await assert.rejects(ip.run(['route add 10.0.0.300/32 dev lo']), /ip batch process exited/);
    assert.deepEqual(await ip.run(['link del bt1']), []);
    assert.match((await ip.run(['link del bt1']))[0].message, /Cannot find device/);
  } finally {
    ip.close();
  }
});

/** Runs HostDataplane inside the namespace (sysctls under /proc/sys are per namespace). */
async function inNs(ns: Netns, body: string): Promise<void> {
  const script = `
    const { HostDataplane } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'dataplane', 'host-dataplane.js'))});
    const pino = require(${JSON.stringify(require.resolve('pino'))});
    const dp = new HostDataplane(pino({ level: 'silent' }));
    (async () => { ${body} })().then(() => dp.close(), (e) => { console.error(e.message); dp.close(); process.exitCode = 1; });`;
  const r = await ns.exec(process.execPath, ['-e', script]);
  assert.equal(r.code, 0, r.stderr);
}

test('an endpoint on a host without a default route: the container reaches the host over v4 and v6 at once', { skip }, async () => {
  const host = await Netns.create('cdth');
  const ctr = await Netns.create('cdtc');
  const epId = 'ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12';
  const hostIf = hostIfName(epId);
  const peer = peerIfName(epId);
  await host.ok('ip', ['addr', 'add', '10.8.8.8/32', 'dev', 'lo']);
  await host.ok('ip', ['addr', 'add', 'fd08::8/128', 'dev', 'lo']);
  const spec = { endpointId: epId, hostIf, peerIf: peer, containerMac: containerMac(epId), ipv4: '10.9.9.9', ipv6: 'fd09::9' };
  await inNs(host, `await dp.start(); await dp.addEndpoint(${JSON.stringify(spec)});`);

  assert.match((await host.ok('ip', ['route', 'get', '169.254.1.1'])).stdout, /dev lo/, 'gateway route added for proxy ARP');
  assert.match((await host.ok('ip', ['-o', 'link', 'show', hostIf])).stdout, /link\/ether ee:ee:ee:ee:ee:ee/);
  assert.match((await host.ok('ip', ['-o', 'link', 'show', peer])).stdout, new RegExp(`link/ether ${spec.containerMac}`));
  for (const [k, v] of [[`net.ipv4.conf.${hostIf}.proxy_arp`, '1'], [`net.ipv4.neigh.${hostIf}.proxy_delay`, '0'], [`net.ipv6.conf.${hostIf}.proxy_ndp`, '1'], ['net.ipv4.ip_forward', '1'], ['net.ipv6.conf.all.forwarding', '1']]) {
    assert.equal((await host.ok('sysctl', ['-n', k])).stdout.trim(), v, k);
  }
  assert.match((await host.ok('ip', ['route', 'show', '10.9.9.9/32'])).stdout, new RegExp(`dev ${hostIf} scope link`));

  // What Docker does after Join: move the peer in, name it eth0, address it, routes from Join's answer.
  await host.ok('ip', ['link', 'set', peer, 'netns', ctr.name]);
  await ctr.ok('ip', ['link', 'set', peer, 'name', 'eth0']);
  await ctr.ok('ip', ['addr', 'add', '10.9.9.9/32', 'dev', 'eth0']);
  await ctr.ok('ip', ['addr', 'add', 'fd09::9/128', 'dev', 'eth0', 'nodad']);
  await ctr.ok('ip', ['link', 'set', 'eth0', 'up']);
  await ctr.ok('ip', ['route', 'add', '169.254.1.1/32', 'dev', 'eth0', 'scope', 'link']);
  await ctr.ok('ip', ['route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
  await ctr.ok('ip', ['-6', 'route', 'add', `${GATEWAY_V6}/128`, 'dev', 'eth0']);
  await ctr.ok('ip', ['-6', 'route', 'add', 'default', 'via', GATEWAY_V6, 'dev', 'eth0']);
  const p4 = await ctr.exec('busybox', ['ping', '-c1', '-W2', '10.8.8.8']);
  assert.equal(p4.code, 0, `container -> host: ${p4.stdout}${p4.stderr}`);
  const p6 = await ctr.exec('busybox', ['ping', '-c1', '-W2', 'fd08::8']);
  assert.equal(p6.code, 0, `container -> host over IPv6: ${p6.stdout}${p6.stderr}`);
  assert.match((await ctr.ok('ip', ['neigh', 'show', '169.254.1.1'])).stdout, /lladdr ee:ee:ee:ee:ee:ee/);
  assert.equal((await host.exec('busybox', ['ping', '-c1', '-W2', '10.9.9.9'])).code, 0, 'host -> container');

  // Removal is idempotent: twice, then the link and its routes are gone.
  await inNs(host, `await dp.removeEndpointNow(${JSON.stringify(hostIf)}); await dp.removeEndpointNow(${JSON.stringify(hostIf)});`);
  assert.notEqual((await host.exec('ip', ['link', 'show', hostIf])).code, 0);
  assert.equal((await host.ok('ip', ['route', 'show', '10.9.9.9/32'])).stdout.trim(), '');
  assert.equal((await run('ip', ['link', 'show', hostIf])).code !== 0, true, 'nothing leaked into the root namespace');
});

test('a retried endpoint replaces the leftover link of the same name', { skip }, async () => {
  const host = await Netns.create('cdtr');
  const epId = 'ee'.repeat(32);
  const spec = { endpointId: epId, hostIf: hostIfName(epId), peerIf: peerIfName(epId), containerMac: containerMac(epId), ipv4: '10.9.9.10' };
  await inNs(host, `await dp.addEndpoint(${JSON.stringify(spec)}); await dp.addEndpoint(${JSON.stringify(spec)});`);
  assert.match((await host.ok('ip', ['route', 'show', '10.9.9.10/32'])).stdout, new RegExp(`dev ${spec.hostIf}`));
  // A bad address fails before any link is made, naming the problem.
  const bad = await host.exec(process.execPath, ['-e', `
    const { HostDataplane } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'dataplane', 'host-dataplane.js'))});
    const dp = new HostDataplane(require(${JSON.stringify(require.resolve('pino'))})({ level: 'silent' }));
    dp.addEndpoint(${JSON.stringify({ ...spec, hostIf: 'cali00000000bad', ipv4: '10.9.9.300' })}).catch((e) => { console.log(e.message); dp.close(); });`]);
  assert.match(bad.stdout, /invalid IPv4 address "10\.9\.9\.300"/);
  assert.notEqual((await host.exec('ip', ['link', 'show', 'cali00000000bad'])).code, 0);
});
