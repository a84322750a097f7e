import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicy, portChunks, ruleMatches, toHostRules, PolicyInput } from '../../src/policy';
import { defaultProfile, DEFAULT_PROFILE, Endpoint, Profile, ProfileRulesInput } from '../../src/datastore';
import type { DesiredState, IpFamily } from '../../src/dataplane/applier/types';
import { classIpset, profileInboundChain, profileOutboundChain, tagIpset, MAX_CHAIN_NAME, MAX_IPSET_NAME } from '../../src/names/kernel';

function ep(over: Partial<Endpoint> & { name: string }): Endpoint {
  return {
    host: 'h1', containerId: `c-${over.name}`, endpointId: `e-${over.name}`, state: 'active', mac: '02:00:00:00:00:01',
    'container:if_name': 'eth0', profile_ids: [], ipv4_nets: [], ipv6_nets: [], ...over,
  };
}

function chain(s: DesiredState, family: IpFamily, name: string): string[] {
  const c = s[`v${family}`].chains.find((x) => x.name === name);
  assert.ok(c, `chain ${name} exists in v${family}`);
  return c.rules;
}

const PROF_GROUP1 = ProfileRulesInput.parse(
  JSON.parse('{"id": "PROF_GROUP1", "inbound_rules": [{"action": "allow", "src_tag": "PROF_GROUP1"}, {"action": "allow"}], "outbound_rules": [{"action": "allow"}]}'),
);

test('profile rules render in order; allow returns, deny drops, the end marks no-match', () => {
  const p: Profile = {
    name: 'P', tags: [],
    rules: { inbound_rules: [{ action: 'deny', protocol: 'tcp', dst_ports: [22] }, { protocol: 'tcp' }, { action: 'allow', src_net: '10.1.2.3/8' }], outbound_rules: [] },
  };
  const s = compilePolicy({ host: 'h1', endpoints: [ep({ name: 'cali0000000001', profile_ids: ['P'], ipv4_nets: ['10.0.0.1/32'] })], profiles: [p] });
  assert.deepEqual(chain(s, 4, 'cali-pri-P'), [
    '-p tcp -m multiport --dports 22 -j DROP',
    '-p tcp -j RETURN',
    '-s 10.0.0.0/8 -j RETURN',
    '-m comment --comment "No rule of profile P matched" -j MARK --set-xmark 0x10000/0x10000',
  ]);
  // In v6 the v4-net rule does not apply (it is not broadened into "from anywhere").
  assert.deepEqual(chain(s, 6, 'cali-pri-P'), [
    '-p tcp -m multiport --dports 22 -j DROP',
    '-p tcp -j RETURN',
    '-m comment --comment "No rule of profile P matched" -j MARK --set-xmark 0x10000/0x10000',
  ]);
});

test('several profiles per endpoint: tried in order, first allow returns, a deny drops, no match drops', () => {
  const a: Profile = { name: 'A', tags: [], rules: { inbound_rules: [{ action: 'deny', protocol: 'udp' }], outbound_rules: [] } };
  const b: Profile = { name: 'B', tags: [], rules: { inbound_rules: [{ protocol: 'tcp' }], outbound_rules: [] } };
  const s = compilePolicy({
    host: 'h1', endpoints: [ep({ name: 'cali0000000001', endpointId: 'E', profile_ids: ['A', 'MISSING', 'B'], ipv4_nets: ['10.0.0.1/32'] })], profiles: [b, a],
  });
  // The endpoint's class is its stored profiles in order: A then B.
  assert.deepEqual(chain(s, 4, 'cali-tc-A+B'), [
    '-j MARK --set-xmark 0x0/0x10000',
    '-j cali-pri-A',
    '-m mark --mark 0x0/0x10000 -m comment --comment "Return if profile A accepted" -j RETURN',
    '-j MARK --set-xmark 0x0/0x10000',
    '-j cali-pri-B',
    '-m mark --mark 0x0/0x10000 -m comment --comment "Return if profile B accepted" -j RETURN',
    '-m comment --comment "Default DROP if no profile allowed it (profiles: A, B)" -j DROP',
  ]);
  assert.deepEqual(s.v4.ipsets.find((x) => x.name === 'cali4-ep-A+B'), { name: 'cali4-ep-A+B', type: 'hash:net,iface', family: 4, members: ['10.0.0.1,cali0000000001'] });
  assert.deepEqual(chain(s, 4, 'cali-pri-A'), ['-p udp -j DROP', '-m comment --comment "No rule of profile A matched" -j MARK --set-xmark 0x10000/0x10000']);
  assert.ok(!s.v4.chains.some((c) => c.name.includes('MISSING')), 'a missing profile gets no chain and matches nothing');
});

test('ports are split into multiport chunks of at most 15 slots (a range takes 2); src x dst chunks cross', () => {
  const ports = Array.from({ length: 20 }, (_, i) => 1000 + i);
  assert.deepEqual(portChunks(ports).map((c) => c.length), [15, 5]);
  assert.deepEqual(portChunks(['1:2', '3:4', '5:6', '7:8', '9:10', '11:12', '13:14', 15, 16]), [
    ['1:2', '3:4', '5:6', '7:8', '9:10', '11:12', '13:14', '15'],
    ['16'],
  ]);
  const m = ruleMatches({ protocol: 'tcp', src_ports: ports, dst_ports: [80, '8000:8080'] }, 4);
  assert.deepEqual(m, [
    `-p tcp -m multiport --sports ${ports.slice(0, 15).join(',')} -m multiport --dports 80,8000:8080`,
    `-p tcp -m multiport --sports ${ports.slice(15).join(',')} -m multiport --dports 80,8000:8080`,
  ]);
});

test('icmp type/code per family, ip_version, and nets or protocols of the other family', () => {
  assert.deepEqual(ruleMatches({ protocol: 'icmp', icmp_type: 8, icmp_code: 0 }, 4), ['-p icmp -m icmp --icmp-type 8/0']);
  assert.deepEqual(ruleMatches({ protocol: 'icmp', icmp_type: 8 }, 6), []);
  assert.deepEqual(ruleMatches({ protocol: 'icmpv6', icmp_type: 128 }, 6), ['-p ipv6-icmp -m icmp6 --icmpv6-type 128']);
  assert.deepEqual(ruleMatches({ protocol: 'icmpv6' }, 4), []);
  assert.deepEqual(ruleMatches({ icmp_type: 3, icmp_code: 1 }, 4), ['-p icmp -m icmp --icmp-type 3/1']);
  assert.deepEqual(ruleMatches({ icmp_type: 1 }, 6), ['-p ipv6-icmp -m icmp6 --icmpv6-type 1']);
  assert.deepEqual(ruleMatches({ ip_version: 6, protocol: 'tcp' }, 4), []);
  assert.deepEqual(ruleMatches({ ip_version: 6, protocol: 'tcp' }, 6), ['-p tcp']);
  assert.deepEqual(ruleMatches({ src_net: '10.0.0.0/8' }, 6), []);
  assert.deepEqual(ruleMatches({ dst_net: 'fd00::1/64' }, 6), ['-d fd00::/64']);
  assert.deepEqual(ruleMatches({ dst_net: 'fd00::/64' }, 4), []);
  assert.deepEqual(ruleMatches({}, 4), ['']);
});

test('tag sets: per tag and family, members from every host, only tags the rules use, inactive endpoints left out', () => {
  const web: Profile = { name: 'web', tags: ['web', 'frontend'], rules: { inbound_rules: [{ src_tag: 'web' }, { dst_tag: 'db' }], outbound_rules: [] } };
  const db: Profile = { name: 'db', tags: ['db'], rules: { inbound_rules: [], outbound_rules: [] } };
  const input: PolicyInput = {
    host: 'h1',
    profiles: [web, db],
    endpoints: [
      ep({ name: 'cali0000000001', profile_ids: ['web'], ipv4_nets: ['10.0.0.1/32'], ipv6_nets: ['fd00::1/128'] }),
      ep({ host: 'h2', name: 'cali0000000002', profile_ids: ['web'], ipv4_nets: ['10.0.0.2/32', '10.5.0.0/24'] }),
      ep({ host: 'h3', name: 'cali0000000003', profile_ids: ['db'], ipv4_nets: ['10.0.0.3/32'] }),
      ep({ host: 'h3', name: 'cali0000000004', profile_ids: ['web'], state: 'inactive', ipv4_nets: ['10.0.0.4/32'] }),
    ],
  };
  const s = compilePolicy(input);
  assert.deepEqual(s.v4.ipsets, [
    { name: 'cali4-ep-web', type: 'hash:net,iface', family: 4, members: ['10.0.0.1,cali0000000001'] },
    { name: 'cali4-tag-db', type: 'hash:net', family: 4, members: ['10.0.0.3'] },
    { name: 'cali4-tag-web', type: 'hash:net', family: 4, members: ['10.0.0.1', '10.0.0.2', '10.5.0.0/24'] },
  ]);
  assert.deepEqual(s.v6.ipsets.map((x) => [x.name, x.members]), [['cali6-ep-web', ['fd00::1,cali0000000001']], ['cali6-tag-db', []], ['cali6-tag-web', ['fd00::1']]]);
  assert.ok(!s.v4.ipsets.some((x) => x.name.includes('frontend')), 'a tag no rule names gets no set');
  assert.deepEqual(chain(s, 4, 'cali-pri-web').slice(0, 2), ['-m set --match-set cali4-tag-web src -j RETURN', '-m set --match-set cali4-tag-db dst -j RETURN']);
  // Only the classes of local, active endpoints get chains.
  assert.deepEqual(s.v4.chains.filter((c) => c.name.startsWith('cali-tc-')).map((c) => c.name), ['cali-tc-web']);
});

test('long profile and tag names are shortened with a hash, never truncated into a collision', () => {
  const a = 'a_very_long_profile_name_shared_prefix_1';
  const b = 'a_very_long_profile_name_shared_prefix_2';
  for (const f of [profileInboundChain, profileOutboundChain]) {
    assert.ok(f(a).length <= MAX_CHAIN_NAME && f(b).length <= MAX_CHAIN_NAME);
    assert.notEqual(f(a), f(b));
  }
  assert.ok(tagIpset(6, a).length <= MAX_IPSET_NAME);
  assert.notEqual(tagIpset(4, a), tagIpset(4, b));
  const s = compilePolicy({
    host: 'h1', endpoints: [ep({ name: 'cali0000000001', profile_ids: [a, b], ipv4_nets: ['10.0.0.1/32'] })],
    profiles: [defaultProfile(a), defaultProfile(b)],
  });
  const names = s.v4.chains.map((c) => c.name);
  assert.equal(new Set(names).size, names.length);
  assert.ok(names.every((n) => n.length <= MAX_CHAIN_NAME));
  assert.ok(s.v4.ipsets.every((x) => x.name.length <= MAX_IPSET_NAME) && s.v4.ipsets.length === 3, 'the class set and two tag sets');
});

test("the blog post's prof_group1.json and the 2015 default profile compile as felix would", () => {
  const g: Profile = { name: 'PROF_GROUP1', tags: ['PROF_GROUP1'], rules: PROF_GROUP1 };
  const s = compilePolicy({ host: 'h1', profiles: [g, defaultProfile(DEFAULT_PROFILE)], endpoints: [
    ep({ name: 'cali0000000001', profile_ids: ['PROF_GROUP1'], ipv4_nets: ['192.168.0.1/32'] }),
    ep({ name: 'cali1000000001', profile_ids: [DEFAULT_PROFILE], ipv4_nets: ['192.168.0.2/32'] }),
  ] });
  assert.deepEqual(chain(s, 4, 'cali-pri-PROF_GROUP1'), [
    '-m set --match-set cali4-tag-PROF_GROUP1 src -j RETURN',
    '-j RETURN',
    '-m comment --comment "No rule of profile PROF_GROUP1 matched" -j MARK --set-xmark 0x10000/0x10000',
  ]);
  assert.deepEqual(chain(s, 4, 'cali-pro-PROF_GROUP1'), [
    '-m mark --mark 0x40000/0x40000 -g cali-prh-PROF_GROUP1',
    '-j RETURN',
    '-m comment --comment "No rule of profile PROF_GROUP1 matched" -j MARK --set-xmark 0x10000/0x10000',
  ]);
  // Its allow-all does not open this host: the host rules of the profile are empty.
  assert.deepEqual(chain(s, 4, 'cali-prh-PROF_GROUP1'), ['-m comment --comment "No rule of profile PROF_GROUP1 matched" -j MARK --set-xmark 0x10000/0x10000']);
  // Default profile: members reach each other, nothing else reaches them.
  assert.deepEqual(chain(s, 4, profileInboundChain(DEFAULT_PROFILE)), [
    `-m set --match-set ${tagIpset(4, DEFAULT_PROFILE)} src -j RETURN`,
    `-m comment --comment "No rule of profile ${DEFAULT_PROFILE} matched" -j MARK --set-xmark 0x10000/0x10000`,
  ]);
  assert.deepEqual(s.v4.ipsets.map((x) => [x.name, x.members]), [
    ['cali4-ep-PROF_GROUP1', ['192.168.0.1,cali0000000001']],
    [classIpset(4, DEFAULT_PROFILE), ['192.168.0.2,cali1000000001']],
    ['cali4-tag-PROF_GROUP1', ['192.168.0.1']],
    [tagIpset(4, DEFAULT_PROFILE), ['192.168.0.2']],
  ]);
});

test('dispatch: hooks at the top, conntrack early, unknown cali interfaces dropped, anti-spoof, host access option', () => {
  const eps = [
    ep({ name: 'cali0000000001', endpointId: 'E1', mac: '02:AA:00:00:00:01', profile_ids: [], ipv4_nets: ['10.0.0.1/32'] }),
    ep({ name: 'cali0000000002', endpointId: 'E2', profile_ids: [], ipv4_nets: ['10.0.0.2/32', '10.0.0.3/32'] }),
    ep({ name: 'calif000000003', endpointId: 'E3', profile_ids: [], ipv4_nets: ['10.0.0.4/32'] }),
  ];
  const s = compilePolicy({ host: 'h1', endpoints: eps, profiles: [] });
  assert.deepEqual(s.v4.hooks.map((h) => [h.chain, h.rule, h.position]), [
    ['FORWARD', '-j cali-FORWARD', 'top'], ['INPUT', '-j cali-INPUT', 'top'], ['OUTPUT', '-j cali-OUTPUT', 'top'],
  ]);
  // Established flows early, unless marked for a recheck (their policy was narrowed since).
  assert.deepEqual(chain(s, 4, 'cali-FORWARD').slice(0, 6), [
    '-i cali+ -m conntrack --ctstate INVALID -j DROP',
    '-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED -m connmark --mark 0x0/0x20000 -j ACCEPT',
    '-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -m comment --comment "Policy narrowed: a reply waits for the original direction to pass again" -j DROP',
    '-o cali+ -m conntrack --ctstate INVALID -j DROP',
    '-o cali+ -m conntrack --ctstate RELATED,ESTABLISHED -m connmark --mark 0x0/0x20000 -j ACCEPT',
    '-o cali+ -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -m comment --comment "Policy narrowed: a reply waits for the original direction to pass again" -j DROP',
  ]);
  assert.deepEqual(chain(s, 4, 'cali-FORWARD').slice(-2), [
    '-o cali+ -m connmark --mark 0x20000/0x20000 -j CONNMARK --set-xmark 0x0/0x20000',
    '-o cali+ -m comment --comment "Policy allowed it" -j ACCEPT',
  ]);
  // One class (no profiles: key "+"), one set of (address, interface) pairs: dispatch and anti-spoof in one lookup.
  assert.deepEqual(chain(s, 4, 'cali-from-wl-dispatch'), [
    '-m set --match-set cali4-ep-+ src,src -g cali-fc-+',
    '-m comment --comment "Anti-spoof DROP: no endpoint of this host has this source address on this interface" -j DROP',
  ]);
  assert.deepEqual(chain(s, 4, 'cali-to-wl-dispatch'), ['-m set --match-set cali4-ep-+ dst,dst -g cali-tc-+', '-m comment --comment "Unknown destination interface or address" -j DROP']);
  assert.deepEqual(chain(s, 4, 'cali-host-wl-dispatch'), ['-m set --match-set cali4-ep-+ dst,dst -j RETURN', '-m comment --comment "Unknown destination interface or address" -j DROP']);
  assert.deepEqual(s.v4.ipsets, [
    { name: 'cali4-ep-+', type: 'hash:net,iface', family: 4, members: ['10.0.0.1,cali0000000001', '10.0.0.2,cali0000000002', '10.0.0.3,cali0000000002', '10.0.0.4,calif000000003'] },
  ]);
  // No IPv6 address: no pair in the IPv6 set, so all of its IPv6 is dropped as spoofed.
  assert.deepEqual(s.v6.ipsets, [{ name: 'cali6-ep-+', type: 'hash:net,iface', family: 6, members: [] }]);
  assert.deepEqual(chain(s, 4, 'cali-fc-+'), ['-m comment --comment "Default DROP if no profile allowed it (profiles: none)" -j DROP']);
  // Neighbour discovery passes ahead of the sets (link-local and multicast addresses are no endpoint's).
  assert.deepEqual(chain(s, 6, 'cali-from-wl-dispatch').slice(0, 6), [130, 131, 132, 133, 135, 136].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`));
  assert.deepEqual(chain(s, 6, 'cali-to-wl-dispatch').slice(0, 6), [130, 131, 132, 134, 135, 136].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`));
  assert.deepEqual(chain(s, 4, 'cali-OUTPUT')[3], '-o cali+ -j cali-host-wl-dispatch');
  const closed = compilePolicy({ host: 'h1', endpoints: eps, profiles: [], options: { hostReachesContainers: false } });
  assert.deepEqual(chain(closed, 4, 'cali-OUTPUT')[3], '-o cali+ -j cali-to-wl-dispatch');
  assert.ok(!closed.v4.chains.some((c) => c.name.startsWith('cali-host-wl')));
  // No endpoints at all: every cali interface is dropped.
  const none = compilePolicy({ host: 'h1', endpoints: [], profiles: [] });
  assert.deepEqual(chain(none, 4, 'cali-to-wl-dispatch'), ['-m comment --comment "Unknown destination interface or address" -j DROP']);
});

test('deterministic: the same input in another order gives identical output', () => {
  const profiles = [defaultProfile('A'), defaultProfile('B')];
  const endpoints = [
    ep({ name: 'cali0000000001', profile_ids: ['A'], ipv4_nets: ['10.0.0.1/32'] }),
    ep({ name: 'cali0000000002', profile_ids: ['B', 'A'], ipv4_nets: ['10.0.0.2/32'] }),
    ep({ host: 'h2', name: 'cali0000000003', profile_ids: ['B'], ipv4_nets: ['10.0.0.3/32'] }),
  ];
  const one = compilePolicy({ host: 'h1', endpoints, profiles });
  const two = compilePolicy({ host: 'h1', endpoints: [...endpoints].reverse(), profiles: [...profiles].reverse() });
  assert.equal(JSON.stringify(one), JSON.stringify(two));
});

test('workload to its own host (INPUT), drop by default: only outbound allow rules naming a dst_net open it', () => {
  const open: Profile = {
    name: 'OPEN', tags: ['OPEN'],
    rules: {
      inbound_rules: [],
      outbound_rules: [
        { action: 'deny', protocol: 'tcp', dst_ports: [2379] },
        { action: 'allow', dst_tag: 'OPEN' },
        { action: 'allow', protocol: 'tcp', dst_net: '198.18.0.1/32', dst_ports: [8080] },
        { action: 'allow', protocol: 'udp' },
        { action: 'allow', dst_net: 'fd00::1/128' },
      ],
    },
  };
  const only: Profile = { name: 'NETS', tags: [], rules: { inbound_rules: [], outbound_rules: [{ action: 'allow', dst_net: '10.0.0.0/8' }] } };
  const eps = [
    ep({ name: 'cali0000000001', endpointId: 'E1', profile_ids: ['OPEN'], ipv4_nets: ['10.0.0.1/32'], ipv6_nets: ['fd00::10/128'] }),
    ep({ name: 'cali0000000002', endpointId: 'E2', profile_ids: ['NETS', DEFAULT_PROFILE], ipv4_nets: ['10.0.0.2/32'] }),
  ];
  const profiles = [open, only, defaultProfile(DEFAULT_PROFILE)];
  const s = compilePolicy({ host: 'h1', endpoints: eps, profiles });

  // INPUT marks the packet as for this host while it runs the endpoint's chain, and clears the bit before accepting.
  assert.deepEqual(chain(s, 4, 'cali-INPUT'), [
    '-i cali+ -m conntrack --ctstate INVALID -j DROP',
    '-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED -m connmark --mark 0x0/0x20000 -j ACCEPT',
    '-i cali+ -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -m comment --comment "Policy narrowed: a reply waits for the original direction to pass again" -j DROP',
    '-i cali+ -m comment --comment "To this host: only rules naming a dst_net allow it" -j MARK --set-xmark 0x40000/0x40000',
    '-i cali+ -j cali-from-wl-dispatch',
    '-i cali+ -j MARK --set-xmark 0x0/0x40000',
    '-i cali+ -m connmark --mark 0x20000/0x20000 -j CONNMARK --set-xmark 0x0/0x20000',
    '-i cali+ -m comment --comment "A rule naming this host allowed it" -j ACCEPT',
  ]);
  // FORWARD is unchanged: no to-host bit there.
  assert.ok(!chain(s, 4, 'cali-FORWARD').some((r) => r.includes('0x40000')));

  // The outbound chain detours marked packets to the host rules: deny rules, and allows that name a dst_net.
  assert.deepEqual(chain(s, 4, 'cali-pro-OPEN')[0], '-m mark --mark 0x40000/0x40000 -g cali-prh-OPEN');
  assert.deepEqual(chain(s, 4, 'cali-prh-OPEN'), [
    '-p tcp -m multiport --dports 2379 -j DROP',
    '-d 198.18.0.1/32 -p tcp -m multiport --dports 8080 -j RETURN',
    '-m comment --comment "No rule of profile OPEN matched" -j MARK --set-xmark 0x10000/0x10000',
  ]);
  assert.deepEqual(chain(s, 6, 'cali-prh-OPEN'), [
    '-p tcp -m multiport --dports 2379 -j DROP',
    '-d fd00::1/128 -j RETURN',
    '-m comment --comment "No rule of profile OPEN matched" -j MARK --set-xmark 0x10000/0x10000',
  ]);
  // A profile whose every allow names a net needs no detour; the default profile's allow-all gets an empty host chain.
  assert.ok(!s.v4.chains.some((c) => c.name === 'cali-prh-NETS'));
  assert.deepEqual(chain(s, 4, 'cali-pro-NETS'), ['-d 10.0.0.0/8 -j RETURN', '-m comment --comment "No rule of profile NETS matched" -j MARK --set-xmark 0x10000/0x10000']);
  assert.deepEqual(chain(s, 4, `cali-prh-${DEFAULT_PROFILE}`), [`-m comment --comment "No rule of profile ${DEFAULT_PROFILE} matched" -j MARK --set-xmark 0x10000/0x10000`]);
  assert.deepEqual(toHostRules(open.rules.outbound_rules), [open.rules.outbound_rules[0], open.rules.outbound_rules[2], open.rules.outbound_rules[4]]);

  // No host service ahead of policy: no DHCP, no DNS to this host; IPv6 neighbour discovery and router solicitation stay.
  const fw4 = [...chain(s, 4, 'cali-from-wl-dispatch'), ...chain(s, 4, 'cali-fc-OPEN')];
  const fw6 = [...chain(s, 6, 'cali-from-wl-dispatch'), ...chain(s, 6, 'cali-fc-OPEN')];
  assert.ok(!fw4.some((r) => /--dport (53|67)\b|addrtype/.test(r)), fw4.join('\n'));
  assert.ok(!fw6.some((r) => /--dport (53|547)\b|addrtype/.test(r)), fw6.join('\n'));
  for (const t of [133, 135, 136]) assert.ok(fw6.includes(`-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`), `ICMPv6 type ${t} from the workload`);
  assert.ok(fw6.indexOf('-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN') < fw6.findIndex((r) => r.includes('Anti-spoof')), 'ND before anti-spoof and policy');

  // accept: the 2015 chains exactly (outbound rules decide, DNS and DHCP to the host ahead of them), no mark, no host chains.
  const acc = compilePolicy({ host: 'h1', endpoints: eps, profiles, options: { endpointToHostAction: 'accept' } });
  assert.deepEqual(chain(acc, 4, 'cali-INPUT').slice(3), [
    '-i cali+ -j cali-from-wl-dispatch',
    '-i cali+ -m connmark --mark 0x20000/0x20000 -j CONNMARK --set-xmark 0x0/0x20000',
    '-i cali+ -m comment --comment "Policy allowed it" -j ACCEPT',
  ]);
  for (const v of [4, 6] as const) assert.ok(!acc[`v${v}`].chains.some((c) => c.name.startsWith('cali-prh-') || c.rules.some((r) => r.includes('0x40000'))));
  assert.deepEqual(chain(acc, 4, 'cali-pro-OPEN')[0], '-p tcp -m multiport --dports 2379 -j DROP');
  // DHCP ahead of the source check (its source is 0.0.0.0), DNS to this host after it, ahead of the profiles.
  assert.equal(chain(acc, 4, 'cali-from-wl-dispatch')[0], '-p udp -m udp --sport 68 --dport 67 -j RETURN');
  assert.equal(chain(acc, 4, 'cali-fc-OPEN')[0], '-p udp -m udp --dport 53 -m addrtype --dst-type LOCAL -j RETURN');
  assert.ok(chain(acc, 6, 'cali-from-wl-dispatch').includes('-p udp -m udp --sport 546 --dport 547 -j RETURN'));
  // The FORWARD path's chains are the same in both modes but for the detour line and the host-service exceptions.
  assert.deepEqual(chain(acc, 4, 'cali-FORWARD'), chain(s, 4, 'cali-FORWARD'));
  assert.deepEqual(chain(acc, 4, 'cali-pro-OPEN'), chain(s, 4, 'cali-pro-OPEN').slice(1));

  // The bit is an option, like the others.
  const other = compilePolicy({ host: 'h1', endpoints: eps, profiles, options: { toHostMark: 0x800000 } });
  assert.equal(chain(other, 4, 'cali-pro-OPEN')[0], '-m mark --mark 0x800000/0x800000 -g cali-prh-OPEN');
});
