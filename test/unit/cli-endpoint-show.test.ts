// `endpoint show`'s pure parts: the view of an endpoint from the datastore,
// its text, the counters read from `iptables -S <chain> -v`, and finding a
// container by id prefix or address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultProfile, DEFAULT_PROFILE, type Endpoint } from '../../src/datastore';
import { endpointView, renderEndpoint } from '../../src/cli/commands/endpoint';
import { byContainer, byIdPrefix, endpointsWithAddress } from '../../src/cli/commands/endpoint-lookup';
import { countersMoved, parseChainCounters, parseIpsetCounters } from '../../src/cli/commands/kernel-view';

const EP: Endpoint = {
  host: 'trinity30', containerId: '3ce2b578b98f00aa', endpointId: '9f1e2d3c4b5a69788796a5b4c3d2e1f0', state: 'active', name: 'cali9f1e2d3c4b5',
  mac: '02:9f:1e:2d:3c:4b', 'container:if_name': 'eth0', profile_ids: ['PROF_GROUP1', 'GONE'], ipv4_nets: ['192.168.89.3/32'], ipv6_nets: [],
  ipv4_gateway: '169.254.1.1',
};

test('endpoint view: profiles in order, a missing one marked, tags of the stored ones', () => {
  const v = endpointView(EP, [defaultProfile('PROF_GROUP1'), defaultProfile(DEFAULT_PROFILE)], 'group1-node3');
  assert.deepEqual(v.profiles, [{ name: 'PROF_GROUP1', stored: true, tags: ['PROF_GROUP1'] }, { name: 'GONE', stored: false, tags: [] }]);
  assert.deepEqual(v.tags, ['PROF_GROUP1']);
  v.routes.push({ from: 'trinity10', address: '192.168.89.3', route: '192.168.89.3 via 198.18.0.30 dev eth0 src 198.18.0.10 uid 0' });
  const text = renderEndpoint(v, false);
  assert.match(text, /^Container: +group1-node3 \(3ce2b578b98f00aa\)$/m);
  assert.match(text, /^Host: +trinity30$/m);
  assert.match(text, /^Profiles: +PROF_GROUP1, GONE \(not stored: matches nothing\)$/m);
  assert.match(text, /^Route: +from trinity10: 192\.168\.89\.3 via 198\.18\.0\.30 dev eth0/m);
  assert.match(text, /on host trinity30 only/, 'no kernel state away from its host');
});

test("endpoint view on its own host: its class's dispatch rules, its pairs with their own counters, its class's chains, a missing one and set membership said plainly", () => {
  const v = endpointView(EP, [defaultProfile('PROF_GROUP1')]);
  v.kernel = {
    dispatch: [
      { family: 4, chain: 'cali-from-wl-dispatch', rule: { rule: '-m set --match-set cali4-ep-PROF_GROUP1 src,src -g cali-fc-PROF_GROUP1', packets: 7, bytes: 588 } },
      { family: 4, chain: 'cali-to-wl-dispatch' },
    ],
    pairs: [
      { family: 4, set: 'cali4-ep-PROF_GROUP1', member: '192.168.89.3,cali9f1e2d3c4b5', present: true, packets: 5 },
      { family: 6, set: 'cali6-ep-PROF_GROUP1', member: 'fd00::3,cali9f1e2d3c4b5', present: false },
    ],
    chains: [
      { family: 4, name: 'cali-fc-PROF_GROUP1', present: true, rules: [{ rule: '-m comment --comment "Default DROP if no profile allowed it (profiles: PROF_GROUP1)" -j DROP', packets: 3, bytes: 252 }, { rule: '-j cali-pro-PROF_GROUP1', packets: 7, bytes: 588 }] },
      { family: 4, name: 'cali-tc-PROF_GROUP1', present: false, rules: [] },
    ],
    sets: [{ family: 4, name: 'cali4-tag-PROF_GROUP1', tag: 'PROF_GROUP1', member: true }],
  };
  const text = renderEndpoint(v, false);
  assert.match(text, /dispatch cali-from-wl-dispatch: -m set --match-set cali4-ep-PROF_GROUP1 src,src -g cali-fc-PROF_GROUP1 +\[7 packets, its class's\]/);
  assert.match(text, /dispatch cali-to-wl-dispatch: MISSING/);
  assert.match(text, /set cali4-ep-PROF_GROUP1: holds 192\.168\.89\.3,cali9f1e2d3c4b5 +\[5 packets\]/);
  assert.match(text, /IPv6 set cali6-ep-PROF_GROUP1: MISSING fd00::3,cali9f1e2d3c4b5 \(its packets are dropped as spoofed or unknown\)/);
  assert.match(text, /chain cali-fc-PROF_GROUP1: present, 2 rules, 3 packets dropped\n +\[ +3 packets\] .*Default DROP/);
  assert.doesNotMatch(text, /\] -j cali-pro-PROF_GROUP1/, 'only the DROPs that counted, without --detailed');
  assert.match(renderEndpoint(v, true), /\[ +7 packets\] -j cali-pro-PROF_GROUP1/);
  assert.match(text, /chain cali-tc-PROF_GROUP1: MISSING/);
  assert.match(text, /set cali4-tag-PROF_GROUP1: member/);
});

test('ipset save of a class set: members and their packet counters', () => {
  const text = [
    'create cali4-ep-P hash:net,iface family inet hashsize 1024 maxelem 1048576 counters bucketsize 12 initval 0x1',
    'add cali4-ep-P 10.0.0.1,cali0000000001 packets 12 bytes 1008',
    'add cali4-ep-P 10.0.0.2,cali0000000002 packets 0 bytes 0',
  ].join('\n');
  assert.deepEqual([...parseIpsetCounters(text)], [['10.0.0.1,cali0000000001', 12], ['10.0.0.2,cali0000000002', 0]]);
  assert.deepEqual([...parseIpsetCounters('create x hash:net,iface family inet\nadd x 10.0.0.1,cali1\n')], [['10.0.0.1,cali1', 0]], 'a set without counters: 0');
});

test('iptables -S -v counters are parsed and their movement computed', () => {
  const text = [
    '-N cali-fw-x',
    '-A cali-fw-x -m mac ! --mac-source 02:00:00:00:00:01 -m comment --comment "Anti-spoof DROP" -c 0 0 -j DROP',
    '-A cali-fw-x -c 12 1008 -j cali-pro-P',
  ].join('\n');
  const before = parseChainCounters(text);
  assert.deepEqual(before, [
    { rule: '-m mac ! --mac-source 02:00:00:00:00:01 -m comment --comment "Anti-spoof DROP" -j DROP', packets: 0, bytes: 0 },
    { rule: '-j cali-pro-P', packets: 12, bytes: 1008 },
  ]);
  const after = parseChainCounters(text.replace('-c 12 1008', '-c 15 1260'));
  assert.deepEqual(countersMoved(before, after), [{ rule: '-j cali-pro-P', packets: 3, bytes: 252, index: 1 }]);
});

test('containers by id prefix and by address', () => {
  const other = { ...EP, containerId: '3ce9000000000000', endpointId: 'e2', ipv4_nets: ['192.168.89.4/32'] };
  const groups = byContainer([EP, other]);
  assert.deepEqual(byIdPrefix(groups, '3ce2'), ['3ce2b578b98f00aa']);
  assert.deepEqual(byIdPrefix(groups, '3ce'), ['3ce2b578b98f00aa', '3ce9000000000000']);
  assert.deepEqual(byIdPrefix(groups, 'ff'), []);
  assert.deepEqual(endpointsWithAddress([EP, other], '192.168.89.4').map((e) => e.endpointId), ['e2']);
});
