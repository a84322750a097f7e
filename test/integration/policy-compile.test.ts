import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Netns, isRoot, teardownAll } from '../harness';
import { compilePolicy, PolicyInput } from '../../src/policy';
import { defaultProfile, Endpoint, Profile } from '../../src/datastore';
import type { DesiredIpset, DesiredState } from '../../src/dataplane/applier/types';
import { containerMac, hostIfName, peerIfName, GATEWAY_V6 } from '../../src/names/interfaces';
import { fromClassChain, fromEndpointDispatchChain } from '../../src/names/kernel';

// The compiler's output against the real kernel, in namespaces this test
// makes: every rule it generates loads (iptables-restore / ip6tables-restore
// and ipset restore), reads back from iptables-save exactly as written (so
// the applier's diff is stable), and filters real pings between veth
// "containers" the way the profiles say.

after(teardownAll);
const skip = !isRoot() && 'needs root (network namespaces, iptables)';

/** The whole filter table as iptables-restore reads it (the real applier renders its own, with --noflush). */
function restoreText(s: DesiredState['v4'], foreign: string[] = []): string {
  const lines = ['*filter', ...foreign.filter((l) => l.startsWith(':')), ...s.chains.map((c) => `:${c.name} - [0:0]`)];
  lines.push(...foreign.filter((l) => !l.startsWith(':')));
  for (const c of s.chains) for (const r of c.rules) lines.push(`-A ${c.name} ${r}`);
  for (const h of s.hooks) lines.push(h.position === 'top' ? `-I ${h.chain} 1 ${h.rule}` : `-A ${h.chain} ${h.rule}`);
  return [...lines, 'COMMIT', ''].join('\n');
}

function ipsetText(sets: DesiredIpset[]): string {
  return sets
    .map((s) => [`create ${s.name} ${s.type} family ${s.family === 4 ? 'inet' : 'inet6'} -exist`, `flush ${s.name}`, ...s.members.map((m) => `add ${s.name} ${m}`)].join('\n') + '\n')
    .join('');
}

/**
 * Loads the state as the whole filter table. `foreign` are rules of others
 * already in the table (e.g. Docker's), loaded beside ours; our hooks go on top.
 */
async function load(ns: Netns, s: DesiredState, foreign: string[] = []): Promise<void> {
  await ns.ok('ipset', ['restore'], { input: ipsetText([...s.v4.ipsets, ...s.v6.ipsets]) });
  await ns.ok('iptables-restore', ['--test'], { input: restoreText(s.v4, foreign) });
  await ns.ok('ip6tables-restore', ['--test'], { input: restoreText(s.v6, foreign) });
  await ns.ok('iptables-restore', [], { input: restoreText(s.v4, foreign) });
  await ns.ok('ip6tables-restore', [], { input: restoreText(s.v6, foreign) });
}

/** What a stock dockerd leaves in filter: FORWARD policy DROP, DOCKER-USER first (it returns). */
const DOCKER = [':FORWARD DROP [0:0]', ':DOCKER-USER - [0:0]', '-A FORWARD -j DOCKER-USER', '-A DOCKER-USER -j RETURN'];

/** Our chains' rules as iptables-save prints them back. */
async function saved(ns: Netns, cmd: 'iptables-save' | 'ip6tables-save'): Promise<Map<string, string[]>> {
  const out = (await ns.ok(cmd, ['-t', 'filter'])).stdout;
  const m = new Map<string, string[]>();
  for (const line of out.split('\n')) {
    const x = /^-A (cali-\S+) (.*)$/.exec(line);
    if (x) m.set(x[1]!, [...(m.get(x[1]!) ?? []), x[2]!]);
  }
  return m;
}

function ep(name: string, over: Partial<Endpoint>): Endpoint {
  return {
    host: 'h1', containerId: `c${name}`, endpointId: `e${name}`, state: 'active', name, mac: '02:00:00:00:00:01',
    'container:if_name': 'eth0', profile_ids: [], ipv4_nets: [], ipv6_nets: [], ...over,
  };
}

test('every generated rule loads into the kernel and reads back from iptables-save exactly as written', { skip }, async () => {
  const long = 'a_profile_name_much_longer_than_any_chain_name_allows';
  const rich: Profile = {
    name: 'rich', tags: ['rich', 'web'],
    rules: {
      inbound_rules: [
        { protocol: 'tcp', src_ports: Array.from({ length: 17 }, (_, i) => 2000 + i), dst_ports: [80, 443, '8000:8080'], src_net: '10.1.2.3/8', dst_tag: 'web' },
        { action: 'deny', protocol: 'icmp', icmp_type: 8, icmp_code: 0 },
        { protocol: 'icmpv6', icmp_type: 128 },
        { icmp_type: 3 },
        { protocol: 'udp', dst_ports: ['1:65535'], dst_net: 'fd00::/8', src_tag: 'rich' },
        { ip_version: 6, action: 'deny' },
        { src_tag: long },
      ],
      outbound_rules: [{ dst_net: '192.168.0.0/16', action: 'deny' }, {}],
    },
  };
  const input: PolicyInput = {
    host: 'h1',
    profiles: [rich, defaultProfile(long), defaultProfile('calico:default')],
    endpoints: [
      ep('cali0a00000001', { profile_ids: ['rich', long], ipv4_nets: ['10.0.0.1/32'], ipv6_nets: ['fd00::1/128'] }),
      ep('cali0a00000002', { profile_ids: ['calico:default'], ipv4_nets: ['10.0.0.2/32', '10.0.9.0/24'], ipv6_nets: ['fd00::2/128', 'fd00:1::/64'], mac: '02:AB:CD:EF:00:02' }),
      ep('calib000000003', { profile_ids: [long, 'missing'], ipv4_nets: ['10.0.0.3/32'] }),
      ep('cali0a00000004', { host: 'h2', profile_ids: [long], ipv4_nets: ['10.0.0.4/32'], ipv6_nets: ['fd00::4/128'] }),
    ],
  };
  const variants = [
    { hostReachesContainers: true },
    { hostReachesContainers: false },
    { hostReachesContainers: true, endpointToHostAction: 'accept' as const },
  ];
  for (const options of variants) {
    const ns = await Netns.create('cdpc');
    const s = compilePolicy({ ...input, options });
    await load(ns, s);
    for (const [fam, cmd] of [['v4', 'iptables-save'], ['v6', 'ip6tables-save']] as const) {
      const back = await saved(ns, cmd);
      for (const c of s[fam].chains) assert.deepEqual(back.get(c.name) ?? [], c.rules, `${fam} ${c.name} reads back as written`);
      assert.equal(back.size, s[fam].chains.filter((c) => c.rules.length).length);
      const top = (await ns.ok(cmd, ['-t', 'filter'])).stdout;
      for (const h of s[fam].hooks) assert.match(top, new RegExp(`^-A ${h.chain} ${h.rule}$`, 'm'));
    }
    const sets = (await ns.ok('ipset', ['list', '-n'])).stdout.split('\n').filter(Boolean).sort();
    assert.deepEqual(sets, [...s.v4.ipsets, ...s.v6.ipsets].map((x) => x.name).sort());
    const web = (await ns.ok('ipset', ['list', 'cali4-tag-web'])).stdout;
    assert.match(web, /^10\.0\.0\.1$/m);
  }
});

/** Runs HostDataplane inside the namespace, as dataplane-host.test does (the node's real endpoint plumbing). */
async function inNs(ns: Netns, body: string): Promise<void> {
  const script = `
    const { HostDataplane } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'dataplane', 'host-dataplane.js'))});
    const pino = require(${JSON.stringify(require.resolve('pino'))});
    const dp = new HostDataplane(pino({ level: 'silent' }));
    (async () => { ${body} })().then(() => dp.close(), (e) => { console.error(e.message); dp.close(); process.exitCode = 1; });`;
  const r = await ns.exec(process.execPath, ['-e', script]);
  assert.equal(r.code, 0, r.stderr);
}

interface Ctr {
  ns: Netns;
  ep: Endpoint;
  v4: string;
  v6: string;
}

async function container(host: Netns, n: number, profile: string): Promise<Ctr> {
  const epId = `${n}0${'ab12cd34ef56'.repeat(5)}`.slice(0, 64);
  const hostIf = hostIfName(epId);
  const peer = peerIfName(epId);
  const [v4, v6] = [`10.70.0.${n}`, `fd70::${n}`];
  await inNs(host, `await dp.start(); await dp.addEndpoint(${JSON.stringify({ endpointId: epId, hostIf, peerIf: peer, containerMac: containerMac(epId), ipv4: v4, ipv6: v6 })});`);
  const ns = await Netns.create('cdpw');
  await host.ok('ip', ['link', 'set', peer, 'netns', ns.name]);
  await ns.ok('ip', ['link', 'set', peer, 'name', 'eth0']);
  await ns.ok('ip', ['addr', 'add', `${v4}/32`, 'dev', 'eth0']);
  await ns.ok('ip', ['addr', 'add', `${v6}/128`, 'dev', 'eth0', 'nodad']);
  await ns.ok('ip', ['link', 'set', 'eth0', 'up']);
  await ns.ok('ip', ['route', 'add', '169.254.1.1/32', 'dev', 'eth0', 'scope', 'link']);
  await ns.ok('ip', ['route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
  await ns.ok('ip', ['-6', 'route', 'add', `${GATEWAY_V6}/128`, 'dev', 'eth0']);
  await ns.ok('ip', ['-6', 'route', 'add', 'default', 'via', GATEWAY_V6, 'dev', 'eth0']);
  const ep: Endpoint = {
    host: 'h1', containerId: `ctr${n}`, endpointId: epId, state: 'active', name: hostIf, mac: containerMac(epId),
    'container:if_name': 'eth0', profile_ids: [profile], ipv4_nets: [`${v4}/32`], ipv6_nets: [`${v6}/128`],
  };
  return { ns, ep, v4, v6 };
}

async function pings(from: Netns | Ctr, to: string, extra: string[] = []): Promise<boolean> {
  const ns = 'ns' in from ? from.ns : from;
  return (await ns.exec('busybox', ['ping', '-c1', '-W1', ...extra, to])).code === 0;
}

test('real pings between veth containers: same profile reach each other, others do not, spoofing is dropped and counted', { skip }, async () => {
  const host = await Netns.create('cdph');
  await host.ok('ip', ['addr', 'add', '10.8.8.8/32', 'dev', 'lo']);
  const a = await container(host, 1, 'G');
  const b = await container(host, 2, 'G');
  const c = await container(host, 3, 'OTHER');
  const endpoints = [a.ep, b.ep, c.ep];
  const G = defaultProfile('G');
  const profiles = [G, defaultProfile('OTHER')];
  // Docker's FORWARD DROP policy does not break allowed traffic: our chains accept it explicitly.
  await load(host, compilePolicy({ host: 'h1', endpoints, profiles }), DOCKER);
  assert.ok(await pings(a, b.v4), 'A -> B under FORWARD policy DROP');
  assert.ok(await pings(b, a.v6), 'B -> A over IPv6 under FORWARD policy DROP');
  // ... and a permissive rule of someone else's after our hook does not let denied traffic through.
  await load(host, compilePolicy({ host: 'h1', endpoints, profiles }), [...DOCKER, '-A FORWARD -j ACCEPT']);
  assert.ok(!(await pings(c, a.v4)), 'C -> A still dropped although FORWARD ends in ACCEPT');
  assert.ok(!(await pings(c, a.v6)), 'and over IPv6');

  await load(host, compilePolicy({ host: 'h1', endpoints, profiles }));
  assert.ok(await pings(a, b.v4), 'A -> B (same profile)');
  assert.ok(await pings(b, a.v6), 'B -> A over IPv6');
  assert.ok(!(await pings(c, a.v4)), 'C (other profile) cannot reach A');
  assert.ok(!(await pings(a, c.v4)), 'A cannot reach C: C lets in only its own profile');
  assert.ok(!(await pings(a, c.v6)), 'nor over IPv6');
  assert.ok(await pings(host, a.v4), 'the host reaches its containers (hostReachesContainers default)');

  // A forged source address: dropped by anti-spoof (no class set holds the pair), and counted there.
  await a.ns.ok('ip', ['addr', 'add', '10.70.0.99/32', 'dev', 'eth0']);
  assert.ok(!(await pings(a, b.v4, ['-I', '10.70.0.99'])), 'a forged source is dropped');
  const counters = (await host.ok('iptables', ['-L', fromEndpointDispatchChain(), '-v', '-n', '-x'])).stdout;
  const spoof = counters.split('\n').find((l) => l.includes('source address'));
  assert.ok(spoof && Number(spoof.trim().split(/\s+/)[0]) > 0, `anti-spoof rule counted the packet:\n${counters}`);

  await a.ns.ok('ip', ['addr', 'add', 'fd70::99/128', 'dev', 'eth0', 'nodad']);
  assert.ok(!(await pings(a, b.v6, ['-I', 'fd70::99'])), 'a forged IPv6 source is dropped');
  const counters6 = (await host.ok('ip6tables', ['-L', fromEndpointDispatchChain(), '-v', '-n', '-x'])).stdout;
  const spoof6 = counters6.split('\n').find((l) => l.includes('source address'));
  assert.ok(spoof6 && Number(spoof6.trim().split(/\s+/)[0]) > 0, `IPv6 anti-spoof rule counted the packet:\n${counters6}`);
  // Another endpoint's address, sent from A's interface: the pair (B's address, A's interface) is in no set,
  // so the packet is dropped as spoofed at the dispatch (not later by some profile).
  const spoofed = async () => {
    const line = (await host.ok('iptables', ['-L', fromEndpointDispatchChain(), '-v', '-n', '-x'])).stdout.split('\n').find((l) => l.includes('source address'));
    return Number(line?.trim().split(/\s+/)[0]);
  };
  const before = await spoofed();
  await a.ns.ok('ip', ['addr', 'add', `${b.v4}/32`, 'dev', 'eth0']);
  assert.ok(!(await pings(a, '10.8.8.8', ['-I', b.v4])), "B's address from A's interface gets no answer");
  assert.ok((await spoofed()) > before, "B's address from A's interface is counted as spoofed");
  await a.ns.ok('ip', ['addr', 'del', `${b.v4}/32`, 'dev', 'eth0']);
  assert.ok(await pings(a, b.v4), 'from its own address, A reaches B again');

  // A rule change takes effect on recompilation: deny icmp (v4 only) ahead of the tag rule.
  const denyIcmp: Profile = { ...G, rules: { ...G.rules, inbound_rules: [{ action: 'deny', protocol: 'icmp' }, ...G.rules.inbound_rules] } };
  await load(host, compilePolicy({ host: 'h1', endpoints, profiles: [denyIcmp, profiles[1]!] }));
  assert.ok(!(await pings(a, b.v4)), 'deny icmp drops v4 ping');
  assert.ok(await pings(a, b.v6), 'the icmp rule is not in the v6 table: v6 ping still allowed by the tag rule');

  // The host reaching its containers is governed by their inbound rules when the option is off.
  await load(host, compilePolicy({ host: 'h1', endpoints, profiles, options: { hostReachesContainers: false } }));
  assert.ok(!(await pings(host, a.v4)), 'host -> A dropped: A admits only its profile');
  assert.ok(await pings(a, b.v4), 'A -> B still fine');

  // An endpoint gone inactive: its interface now falls to the fail-closed dispatch.
  await load(host, compilePolicy({ host: 'h1', endpoints: [a.ep, { ...b.ep, state: 'inactive' }, c.ep], profiles }));
  assert.ok(!(await pings(a, b.v4)), 'traffic to an interface without a programmed endpoint is dropped');
});

test('a container cannot reach its own host (drop by default) unless a rule names the address; peers, the host and IPv6 ND keep working', { skip }, async () => {
  const host = await Netns.create('cdph');
  // Addresses of the host's own: one routed over loopback, in both families.
  await host.ok('ip', ['addr', 'add', '10.8.8.8/32', 'dev', 'lo']);
  await host.ok('ip', ['addr', 'add', 'fd08::8/128', 'dev', 'lo']);
  const a = await container(host, 1, 'G');
  const b = await container(host, 2, 'G');
  const endpoints = [a.ep, b.ep];
  const G = defaultProfile('G');
  await load(host, compilePolicy({ host: 'h1', endpoints, profiles: [G] }), DOCKER);
  assert.ok(await pings(a, b.v4), 'A -> B (same profile)');
  assert.ok(await pings(b, a.v6), 'B -> A over IPv6: neighbour discovery with the host still works');
  assert.ok(await pings(host, a.v4), 'the host reaches A, and its reply comes back through INPUT');
  assert.ok(await pings(host, a.v6), 'and over IPv6');
  assert.ok(!(await pings(a, '10.8.8.8')), "A cannot reach its host's address although its profile allows all outbound");
  assert.ok(!(await pings(a, 'fd08::8')), 'nor over IPv6');
  const drops = (await host.ok('iptables', ['-L', fromClassChain('G'), '-v', '-n', '-x'])).stdout.split('\n').find((l) => l.includes('Default DROP'));
  assert.ok(drops && Number(drops.trim().split(/\s+/)[0]) > 0, `counted on the class's default DROP: ${drops}`);

  // A rule that names the host's address opens it (in its family only), and only for that profile's members.
  const opened: Profile = { ...G, rules: { ...G.rules, outbound_rules: [{ action: 'allow', protocol: 'icmp', dst_net: '10.8.8.8/32' }, ...G.rules.outbound_rules] } };
  await load(host, compilePolicy({ host: 'h1', endpoints: [a.ep, { ...b.ep, profile_ids: ['OTHER'] }], profiles: [opened, defaultProfile('OTHER')] }));
  assert.ok(await pings(a, '10.8.8.8'), 'a rule naming 10.8.8.8/32 opens it');
  assert.ok(!(await pings(a, 'fd08::8')), 'not the IPv6 address');
  assert.ok(!(await pings(b, '10.8.8.8')), 'not for another profile');

  // accept (the 2015 behaviour): the outbound allow-all reaches the host.
  await load(host, compilePolicy({ host: 'h1', endpoints, profiles: [G], options: { endpointToHostAction: 'accept' } }));
  assert.ok(await pings(a, '10.8.8.8'), 'accept: A reaches its host');
  assert.ok(await pings(a, 'fd08::8'), 'accept: and over IPv6');
  assert.ok(await pings(a, b.v4), 'accept: A -> B');
});
