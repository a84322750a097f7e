// IP-in-IP across subnets (docs/ipip.md), on the trinity lab split in two:
// trinity10 and trinity30 on one LAN, trinity20 on another, joined by the
// router, which knows the host addresses and no pool. The mesh comes up
// across the router; without IP-in-IP a container on trinity10 cannot reach
// one on trinity20 (BIRD's route points at the router, which drops it).
// With `pool add --ipip` the node brings tunl0 up, routes trinity20's block
// through it, and the router sees only protocol 4 between host addresses;
// cross-subnet keeps trinity30 (same LAN) native; protocol 4 from a
// non-node address is dropped and counted; turning IP-in-IP off leaves
// nothing of it behind.
//
// The data path needs the kernel's ipip module. On a kernel without it the
// node says so (calicoctl status, the tunnel's error) and the tests that
// need packets through tunl0 are skipped, naming why; everything else (the
// BIRD filter, the protocol-4 filter and its counter, the veth MTU, the
// modes, the clean-up) is checked all the same; and trinity30 gets a
// stand-in device named tunl0 (one end of a veth pair), so that what the node programs on it
// (MTU, address from its own block, the routes, their removal) is checked
// too. (On a kernel with ipip there is no stand-in.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isRoot, run, teardownAll, waitFor } from '../harness';
import { bgpSessions, parseBirdProtocols } from '../../src/bgp/status';
import { readStatusFile } from '../../src/node/status-file';
import type { TunnelStatus } from '../../src/tunnel/tunnel';
import { HOST_NAMES, HostName, TrinityHost, TrinityLab, startTrinityLab } from './trinity-lab';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd, BIRD)';

const POOL = '10.66.0.0/16';
let lab: TrinityLab;
let h: Record<HostName, TrinityHost>;
const ips = {} as Record<HostName, string>;
/** Why packets cannot go through tunl0 here (undefined: they can). */
let noDataPath: string | undefined;
/** trinity30 has a stand-in tunl0 (the kernel has no ipip). */
let standIn = false;

function blockOf(ip: string): string {
  const o = ip.split('.').map(Number);
  return `${o[0]}.${o[1]}.${o[2]}.${o[3]! & 0xc0}/26`;
}

const esc = (s: string) => s.replace(/[./]/g, (c) => `\\${c}`);

function tunnelStatus(host: TrinityHost): TunnelStatus | undefined {
  return readStatusFile(host.stateDir)?.components.tunnel as TunnelStatus | undefined;
}

async function routes(host: TrinityHost, ...filter: string[]): Promise<string> {
  return (await host.exec('ip', ['-4', 'route', 'show', ...filter])).stdout;
}

/** pkts of the protocol-4 ACCEPT and DROP rules of trinity10's filter. */
async function ipipCounters(host: TrinityHost): Promise<{ accept: number; drop: number }> {
  const out = (await host.exec('iptables', ['-w', '-nvxL', 'cali-ipip-input'])).stdout;
  const pkts = (target: string) => Number(new RegExp(`^\\s*(\\d+)\\s+\\d+\\s+${target}\\b`, 'm').exec(out)?.[1] ?? NaN);
  return { accept: pkts('ACCEPT'), drop: pkts('DROP') };
}

/** One protocol-4 packet (an inner ICMP echo to `inner`) sent from namespace `nsPath` to `dst`. */
async function sendIpip(nsPath: string, dst: string, innerSrc: string, inner: string): Promise<void> {
  const py = [
    'import socket,struct,sys',
    'def ck(b):',
    '  s=sum(struct.unpack("!%dH"%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16; return ~s&0xffff',
    'icmp=struct.pack("!BBHHH",8,0,0,1,1)+b"spoof"*4',
    'icmp=icmp[:2]+struct.pack("!H",ck(icmp))+icmp[4:]',
    'hdr=struct.pack("!BBHHHBBH4s4s",0x45,0,20+len(icmp),1,0,64,1,0,socket.inet_aton(sys.argv[2]),socket.inet_aton(sys.argv[3]))',
    'hdr=hdr[:10]+struct.pack("!H",ck(hdr))+hdr[12:]',
    's=socket.socket(socket.AF_INET,socket.SOCK_RAW,4)',
    'for _ in range(3): s.sendto(hdr+icmp,(sys.argv[1],0))',
  ].join('\n');
  const r = await run('nsenter', [`--net=${nsPath}`, 'python3', '-c', py, dst, innerSrc, inner], { timeoutMs: 10000 });
  assert.equal(r.code, 0, r.stderr);
}

/** Lines tcpdump prints in namespace `nsPath` on `dev` while `during` runs (host-to-host control traffic left out). */
async function capture(nsPath: string, dev: string, during: () => Promise<void>): Promise<string[]> {
  const p = spawn('nsenter', [`--net=${nsPath}`, 'tcpdump', '-n', '-l', '-p', '-i', dev, 'ip and not (tcp port 179 or tcp port 2379 or tcp port 2380)'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  await waitFor(`tcpdump listening on ${dev}`, async () => /listening on/.test(err) || p.exitCode !== null, 10000, 50);
  try {
    await during();
  } finally {
    p.kill('SIGINT');
    await exited;
  }
  return out.split('\n').filter((l) => /\bIP\b/.test(l));
}

before(async () => {
  if (skip) return;
  const t0 = Date.now();
  lab = await startTrinityLab({ secondLan: ['trinity20'] });
  h = lab.hosts;
  const probe = await h.trinity30.exec('ip', ['link', 'add', 'ipipprobe', 'type', 'ipip']);
  if (probe.code === 0) await h.trinity30.exec('ip', ['link', 'del', 'ipipprobe']);
  else {
    standIn = true;
    // A veth end named tunl0 (its peer up, so it has carrier): what a dummy device would be, on kernels without one.
    const r = await h.trinity30.exec('sh', ['-c', 'ip link add tunl0 type veth peer name tunl0-peer && ip link set tunl0-peer up']);
    assert.equal(r.code, 0, r.stderr);
  }
  await h.trinity10.calicoctlOk(['pool', 'add', POOL]);
  await Promise.all(HOST_NAMES.map((n) => h[n].startNode()));
  for (const n of HOST_NAMES) {
    await waitFor(`${n}'s mesh across the router`, async () => {
      const r = await h[n].birdc(['show', 'protocols', 'all']);
      return r.code === 0 && bgpSessions(parseBirdProtocols(r.stdout)).filter((s) => s.established).length >= 2;
    }, 30000, 200);
  }
  for (const n of HOST_NAMES) {
    await h[n].dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', `c-${n}`, lab.image, 'sleep', '3600']);
    ips[n] = await h[n].containerIp(`c-${n}`);
  }
  console.log(`lab (two subnets) up, nodes meshed, containers running: ${Date.now() - t0} ms`);
});

test('without IP-in-IP: trinity30 (same subnet) is reached, trinity20 (behind the router) is not', { skip }, async () => {
  await waitFor('c-trinity10 -> c-trinity30', () => h.trinity10.pingFrom('c-trinity10', ips.trinity30), 10000, 100);
  // BIRD's route to trinity20's block resolves to the router, which has no route to the pool.
  const b20 = blockOf(ips.trinity20);
  await waitFor(`${b20} learned by BGP on trinity10`, async () => /proto bird/.test(await routes(h.trinity10, b20)), 10000, 100);
  assert.match(await routes(h.trinity10, b20), /via 198\.18\.0\.1 dev eth0 proto bird/);
  assert.equal(await h.trinity10.pingFrom('c-trinity10', ips.trinity20), false, 'no reach across the router without IP-in-IP');
});

test('pool add --ipip: tunnel, routes via tunl0, the router sees only protocol 4 between host addresses; MTU', { skip }, async (t) => {
  const h10 = h.trinity10;
  assert.match(await h10.calicoctlOk(['pool', 'add', POOL, '--ipip']), /Updated pool 10\.66\.0\.0\/16: options now ipip/);
  assert.match(await h10.calicoctlOk(['pool', 'show', '--ipv4']), /10\.66\.0\.0\/16 +\| ipip +\|/);
  const b20 = blockOf(ips.trinity20);
  const b30 = blockOf(ips.trinity30);
  // BIRD keeps its own route for the tunnelled blocks out of the kernel.
  await waitFor('no BIRD route to the remote blocks on trinity10', async () => !/proto bird/.test(await routes(h10, 'proto', 'bird')), 10000, 100);
  // The protocol-4 filter: every node's address in the set.
  await waitFor('the node set on trinity10', async () => {
    const r = await h10.exec('ipset', ['list', 'cali40all-hosts']);
    return ['198.18.0.10', '198.18.2.20', '198.18.0.30'].every((a) => r.stdout.includes(a));
  }, 10000, 100);
  assert.match((await h10.exec('iptables-save', ['-t', 'filter'])).stdout, /-A INPUT -p (4|ipencap) -j cali-ipip-input/);

  // A new container in the pool: its interface is the underlay's MTU (1500) minus 20.
  await h10.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'c-mtu', lab.image, 'sleep', '3600']);
  assert.match(await h10.dockerOk(['exec', 'c-mtu', 'ip', '-o', 'link', 'show', 'eth0']), /mtu 1480 /);

  const st = await waitFor('trinity10 tunnel status', async () => {
    const s = tunnelStatus(h10);
    return s?.enabled && (s.error || s.routes.length >= 2) ? s : undefined;
  }, 10000, 100);
  if (st.error) {
    noDataPath = st.error;
    assert.match(st.error, /cannot bring up tunl0: this kernel has no IP-in-IP support/);
    const status = (await h10.calicoctl(['status', '--state-dir', h10.stateDir, '--plugin-name', h10.pluginName])).stdout;
    assert.match(status, /IP-in-IP \(pools 10\.66\.0\.0\/16 always\): tunl0 NOT in place: cannot bring up tunl0/, status);
    if (standIn) await programmedOnStandIn();
    t.diagnostic(`no data path through tunl0 on this kernel: ${st.error}`);
    console.log(`SKIPPED the data-path checks: ${st.error}`);
    return;
  }
  assert.match(await routes(h10, b20), new RegExp(`${esc(b20)} via 198\\.18\\.2\\.20 dev tunl0 proto 80 onlink`));
  assert.match(await routes(h10, b30), /dev tunl0 proto 80 onlink/, 'always: the same subnet is tunnelled too');
  assert.match((await h10.exec('ip', ['-o', 'link', 'show', 'tunl0'])).stdout, /mtu 1480 .*state UNKNOWN|mtu 1480 /);

  const routerNs = lab.router.path;
  await h.trinity20.direct(['exec', '-d', 'c-trinity20', 'sh', '-c', 'nc -l -p 7000 > /tmp/got']);
  const lines = await capture(routerNs, 'eth0', async () => {
    await waitFor('c-trinity10 -> c-trinity20 through the tunnel', () => h10.pingFrom('c-trinity10', ips.trinity20), 10000, 100);
    assert.ok(await h.trinity20.pingFrom('c-trinity20', ips.trinity10), 'and back');
    // 10 MiB of TCP, byte-exact.
    await h10.dockerOk(['exec', 'c-trinity10', 'sh', '-c', `dd if=/dev/urandom of=/tmp/f bs=1048576 count=10 2>/dev/null && nc ${ips.trinity20} 7000 < /tmp/f`], { timeoutMs: 60000 });
    const sent = (await h10.dockerOk(['exec', 'c-trinity10', 'md5sum', '/tmp/f'])).split(' ')[0];
    await waitFor('10 MiB received', async () => (await h.trinity20.direct(['exec', 'c-trinity20', 'md5sum', '/tmp/got'])).stdout.split(' ')[0] === sent, 20000, 200);
    // Don't fragment, the tunnel's MTU less IP and ICMP headers: it fits; one byte more does not.
    const mtuNs = await h10.containerNetns('c-mtu');
    const ping = (size: number) => run('nsenter', [`--net=${mtuNs}`, 'ping', '-c', '1', '-W', '2', '-M', 'do', '-s', String(size), ips.trinity20], { timeoutMs: 10000 });
    const fits = await ping(1480 - 28);
    assert.equal(fits.code, 0, fits.stdout + fits.stderr);
    assert.notEqual((await ping(1480 - 27)).code, 0);
  });
  assert.ok(lines.length > 0, 'the capture saw the traffic');
  const bad = lines.filter((l) => !/ IP (198\.18\.0\.10|198\.18\.2\.20) > (198\.18\.2\.20|198\.18\.0\.10): IP /.test(l));
  assert.deepEqual(bad, [], 'only protocol 4 between the two host addresses crosses the router');
});

/** `wait`, and when it fails, what the host's tunnel says of itself (status file, log). */
async function explained<T>(host: TrinityHost, wait: () => Promise<T>): Promise<T> {
  try {
    return await wait();
  } catch (e) {
    const log = host.nodeLog(400).split('\n').filter((l) => /tunnel|IP-in-IP/.test(l)).slice(-15).join('\n');
    const kernel = (await routes(host)) + (await host.exec('ip', ['-d', 'link', 'show', 'tunl0'])).stdout;
    throw new Error(`${(e as Error).message}\n${host.name} tunnel status: ${JSON.stringify(tunnelStatus(host))}\nlog:\n${log}\nkernel:\n${kernel}`);
  }
}

/** What trinity30's node put on its stand-in tunl0: MTU, an address of its own block, a route to each other host's block. */
async function programmedOnStandIn(): Promise<void> {
  const h30 = h.trinity30;
  const b10 = blockOf(ips.trinity10);
  const b20 = blockOf(ips.trinity20);
  await explained(h30, () => waitFor('trinity30\'s routes through tunl0', async () => {
    const r = await routes(h30, 'proto', '80');
    return new RegExp(`${esc(b10)} via 198\\.18\\.0\\.10 dev tunl0 (proto 80 )?onlink`).test(r) && new RegExp(`${esc(b20)} via 198\\.18\\.2\\.20 dev tunl0 (proto 80 )?onlink`).test(r);
  }, 5000, 100));
  const link = (await h30.exec('ip', ['-o', '-4', 'addr', 'show', 'dev', 'tunl0'])).stdout;
  const addr = /inet (\d+\.\d+\.\d+\.\d+)\/32/.exec(link)?.[1];
  assert.ok(addr && blockOf(addr) === blockOf(ips.trinity30), `tunl0's address lies in trinity30's block: ${link}`);
  assert.match((await h30.exec('ip', ['-o', 'link', 'show', 'tunl0'])).stdout, /mtu 1480 /);
  const status = await h30.calicoctlOk(['status', '--state-dir', h30.stateDir, '--plugin-name', h30.pluginName]);
  assert.match(status, new RegExp(`tunl0 up, MTU 1480, address ${esc(addr)}; underlay eth0 198\\.18\\.0\\.0/24; 2 routes through it`), status);
  assert.match(status, new RegExp(`  ${esc(b20)} via 198\\.18\\.2\\.20 \\(trinity20\\)`), status);
  // diags holds the device and the routes through it.
  const cwd = path.join(lab.dir, 'diags30');
  fs.mkdirSync(cwd);
  const d = await h30.calicoctlOk(['diags', '--state-dir', h30.stateDir], { cwd, timeoutMs: 60000 });
  const archive = /Diags saved to (\S+\.tar\.gz)/.exec(d)?.[1];
  assert.ok(archive, d);
  const top = path.basename(archive, '.tar.gz');
  const part = async (f: string) => (await run('tar', ['-xzOf', archive, `${top}/${f}`])).stdout;
  assert.match(await part('ip-tunl0.txt'), /tunl0(@\S+)?: .*mtu 1480/);
  assert.match(await part('ip-route-tunl0.txt'), new RegExp(`${esc(b20)} via 198\\.18\\.2\\.20`));
}

test('protocol 4 from a non-node address is dropped and counted; from a node it is accepted', { skip }, async () => {
  const h10 = h.trinity10;
  const before = await ipipCounters(h10);
  assert.ok(Number.isFinite(before.drop), 'the protocol-4 chain is there');
  // The router is no node: its 198.18.0.1 is not in the set.
  await sendIpip(lab.router.path, h10.ip, '10.66.250.1', ips.trinity10);
  await waitFor('the drop counter moves', async () => (await ipipCounters(h10)).drop >= before.drop + 3, 5000, 50);
  const mid = await ipipCounters(h10);
  await sendIpip(h.trinity30.ns.path, h10.ip, ips.trinity30, ips.trinity10);
  await waitFor('the accept counter moves', async () => (await ipipCounters(h10)).accept >= mid.accept + 3, 5000, 50);
  assert.equal((await ipipCounters(h10)).drop, mid.drop, 'a node\'s packets are not dropped');
});

test('cross-subnet: trinity30 (same subnet) native, trinity20 through the tunnel; applied live', { skip }, async () => {
  const h10 = h.trinity10;
  assert.match(await h10.calicoctlOk(['pool', 'add', POOL, '--ipip-mode', 'cross-subnet']), /options now ipip\(cross-subnet\)/);
  assert.match(await h10.calicoctlOk(['pool', 'show', '--ipv4']), /ipip\(cross-subnet\)/);
  const b20 = blockOf(ips.trinity20);
  const b30 = blockOf(ips.trinity30);
  // BIRD puts trinity30's block in natively again; trinity20's stays out.
  await waitFor(`${b30} native on trinity10`, async () => new RegExp(`via 198\\.18\\.0\\.30 dev eth0 proto bird`).test(await routes(h10, b30)), 15000, 100);
  assert.doesNotMatch(await routes(h10, b20), /proto bird/);
  await waitFor('c-trinity10 -> c-trinity30 natively', () => h10.pingFrom('c-trinity10', ips.trinity30), 10000, 100);
  if (standIn) {
    await waitFor('stand-in tunnel routes on trinity30: trinity20 only', async () => {
      const r = await routes(h.trinity30, 'proto', '80');
      return r.includes(b20) && !r.includes(blockOf(ips.trinity10));
    }, 5000, 100);
  }
  if (noDataPath) return;
  await waitFor('tunnel routes on trinity10: trinity20 only', async () => {
    const r = await routes(h10, 'proto', '80');
    return r.includes(b20) && !r.includes(b30);
  }, 5000, 100);
  // No protocol 4 on the trinity10 - trinity30 link while they talk.
  const lines = await capture(h.trinity30.ns.path, 'eth0', async () => {
    assert.ok(await h10.pingFrom('c-trinity10', ips.trinity30));
    assert.ok(await h10.pingFrom('c-trinity10', ips.trinity20), 'trinity20 still through the tunnel');
  });
  const tunnelled = lines.filter((l) => / IP 198\.18\.\d+\.\d+ > 198\.18\.\d+\.\d+: IP /.test(l));
  assert.deepEqual(tunnelled, [], 'trinity30 is reached natively');
});

test('IP-in-IP off: tunl0, its routes, address, filter and set go; BIRD\'s route comes back', { skip }, async () => {
  const h10 = h.trinity10;
  assert.match(await h10.calicoctlOk(['pool', 'add', POOL]), /options now none/);
  const b20 = blockOf(ips.trinity20);
  for (const n of HOST_NAMES) {
    const host = h[n];
    await waitFor(`nothing of IP-in-IP left on ${n}`, async () => {
      const ipt = (await host.exec('iptables-save', [])).stdout;
      const set = await host.exec('ipset', ['list', '-n']);
      const ours = await routes(host, 'proto', '80');
      const link = await host.exec('ip', ['-o', '-4', 'addr', 'show', 'dev', 'tunl0']);
      return !/cali-ipip/.test(ipt) && !/cali40all-hosts/.test(set.stdout) && ours.trim() === '' && link.stdout.trim() === '';
    }, 10000, 100);
    // The status file is written every 2 s.
    await waitFor(`${n}'s status: IP-in-IP off`, async () => tunnelStatus(host)?.enabled === false, 5000, 100);
  }
  // A device the node could delete (the stand-in; the ipip module's own tunl0 cannot be) is gone.
  if (standIn) assert.notEqual((await h.trinity30.exec('ip', ['link', 'show', 'tunl0'])).code, 0, 'the stand-in tunl0 is deleted');
  await waitFor(`${b20} back from BIRD on trinity10`, async () => /via 198\.18\.0\.1 dev eth0 proto bird/.test(await routes(h10, b20)), 15000, 100);
  // The tunnel's address went back to IPAM: only the containers hold addresses.
  const pools = JSON.parse(await h10.calicoctlOk(['pool', 'show', '--ipv4', '--output', 'json'])) as { cidr: string; allocated: number }[];
  assert.equal(pools.find((p) => p.cidr === POOL)?.allocated, 4, 'c-trinity10, c-trinity20, c-trinity30, c-mtu');
});

test('node stop --force with IP-in-IP on: the tunnel\'s routes, address, allocation, filter and device go with the node', { skip }, async () => {
  const h30 = h.trinity30;
  if (standIn) {
    const r = await h30.exec('sh', ['-c', 'ip link add tunl0 type veth peer name tunl0-peer && ip link set tunl0-peer up']);
    assert.equal(r.code, 0, r.stderr);
  }
  const allocated = async () => (JSON.parse(await h.trinity10.calicoctlOk(['pool', 'show', '--ipv4', '--output', 'json'])) as { cidr: string; allocated: number }[]).find((p) => p.cidr === POOL)?.allocated;
  const before = await allocated();
  assert.ok(before !== undefined, 'the pool is there');
  await h.trinity10.calicoctlOk(['pool', 'add', POOL, '--ipip']);
  let addr = '';
  await explained(h30, () => waitFor('trinity30\'s tunnel address and routes', async () => {
    addr = /inet (\S+)/.exec((await h30.exec('ip', ['-o', '-4', 'addr', 'show', 'dev', 'tunl0'])).stdout)?.[1] ?? '';
    return addr !== '' && (await routes(h30, 'proto', '80')).trim() !== '';
  }, 15000, 100));
  // Every node has taken its tunnel address, or said why it cannot (no ipip in the kernel, no stand-in).
  for (const n of HOST_NAMES) {
    await waitFor(`${n}'s tunnel status`, async () => { const st = tunnelStatus(h[n]); return st?.enabled === true && (st.address !== undefined || st.error !== undefined); }, 10000, 100);
  }
  const on = (await allocated())!;
  assert.ok(on > before!, `the tunnel address is allocated in IPAM (${before} before, ${on} now)`);
  const out = await h30.calicoctlOk(['node', 'stop', '--force', '--state-dir', h30.stateDir]);
  assert.match(out, /Removed the IP-in-IP tunnel \(\d+ route\(s\), its address and its allocation\)/, out);
  assert.equal((await routes(h30, 'proto', '80')).trim(), '', 'no tunnel route left');
  assert.doesNotMatch((await h30.exec('iptables-save', [])).stdout, /cali-ipip/);
  assert.doesNotMatch((await h30.exec('ipset', ['list', '-n'])).stdout, /cali40all-hosts/);
  const link = await h30.exec('ip', ['-o', '-4', 'addr', 'show', 'dev', 'tunl0']);
  // The stand-in (like a tunl0 we created) is deleted; the ipip module's own device stays, empty and down.
  if (standIn) assert.notEqual(link.code, 0, `the stand-in tunl0 is deleted: ${link.stdout}`);
  else assert.equal(link.stdout.trim(), '', 'tunl0 holds no address');
  assert.equal(await allocated(), on - 1, `trinity30's tunnel address ${addr} went back to IPAM`);
});
