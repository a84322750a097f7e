import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostSysctls, isAlreadyGone, planEndpoint, planEndpointRemoval, planSweep } from '../../src/dataplane/plan';

const base = { endpointId: 'e1', hostIf: 'cali0123456789a', peerIf: 'ctmp0123456789a', containerMac: '02:11:22:33:44:55' };

test('IPv4 endpoint: veth with the fixed host MAC, link up, /32 route; proxy ARP without delay', () => {
  const p = planEndpoint({ ...base, ipv4: '10.0.0.5' });
  assert.deepEqual(p.commands, [
    'link add cali0123456789a address ee:ee:ee:ee:ee:ee type veth peer name ctmp0123456789a address 02:11:22:33:44:55',
    'link set cali0123456789a up',
    'route replace 10.0.0.5/32 dev cali0123456789a scope link',
  ]);
  const s = Object.fromEntries(p.sysctls.map((x) => [x.key, x.value]));
  assert.equal(s['net/ipv4/conf/cali0123456789a/proxy_arp'], '1');
  assert.equal(s['net/ipv4/neigh/cali0123456789a/proxy_delay'], '0');
  assert.equal(s['net/ipv4/conf/cali0123456789a/forwarding'], '1');
  assert.equal(s['net/ipv6/conf/cali0123456789a/accept_ra'], '0');
  assert.equal(s['net/ipv6/conf/cali0123456789a/proxy_ndp'], undefined, 'no IPv6 settings without an IPv6 address');
});

test('dual stack: link-local gateway without DAD, /128 route, proxy NDP', () => {
  const p = planEndpoint({ ...base, ipv4: '10.0.0.5', ipv6: 'FD00:0:0::0005', mtu: 1400 });
  assert.ok(p.commands[0].includes('cali0123456789a mtu 1400 address'));
  assert.ok(p.commands[0].includes('ctmp0123456789a mtu 1400 address'));
  assert.ok(p.commands.includes('addr add fe80::ecee:eeff:feee:eeee/64 dev cali0123456789a scope link nodad'));
  assert.ok(p.commands.includes('route replace fd00::5/128 dev cali0123456789a'), 'address in canonical form');
  const s = Object.fromEntries(p.sysctls.map((x) => [x.key, x.value]));
  assert.equal(s['net/ipv6/conf/cali0123456789a/proxy_ndp'], '1');
  assert.equal(s['net/ipv6/conf/cali0123456789a/accept_dad'], '0');
  assert.equal(s['net/ipv6/conf/cali0123456789a/forwarding'], '1');
});

test('malformed input never reaches an ip command line (ip would exit and take the batch down)', () => {
  assert.throws(() => planEndpoint({ ...base, ipv4: '10.0.0.300' }), /invalid IPv4 address "10.0.0.300"/);
  assert.throws(() => planEndpoint({ ...base, ipv4: 'fd00::1' }), /not an IPv4 address/);
  assert.throws(() => planEndpoint({ ...base, ipv6: '10.0.0.1' }), /not an IPv6 address/);
  assert.throws(() => planEndpoint({ ...base, hostIf: 'cali with space' }), /invalid interface name/);
  assert.throws(() => planEndpoint({ ...base, hostIf: 'cali0123456789abc' }), /invalid interface name/);
  assert.throws(() => planEndpoint({ ...base, containerMac: '02:11:22:33:44' }), /invalid MAC/);
  assert.throws(() => planEndpoint({ ...base, ipv4: '10.0.0.1', mtu: 20 }), /invalid MTU/);
  assert.throws(() => planEndpointRemoval('bad\nname'), /invalid interface name/);
});

test('removal deletes the host end (the kernel takes the pair and its routes)', () => {
  assert.deepEqual(planEndpointRemoval('cali0123456789a'), ['link del cali0123456789a']);
  assert.ok(isAlreadyGone('Cannot find device "cali0123456789a"'));
  assert.ok(!isAlreadyGone('RTNETLINK answers: Operation not permitted'));
});

test('host forwarding: IPv4 always, IPv6 only when asked', () => {
  assert.deepEqual(hostSysctls(false), [{ key: 'net/ipv4/ip_forward', value: '1' }]);
  assert.deepEqual(hostSysctls(true).map((s) => s.key), ['net/ipv4/ip_forward', 'net/ipv6/conf/all/forwarding']);
});

test('links are tagged with their owner; the sweep takes only our stale host ends', () => {
  const p = planEndpoint({ ...base, ipv4: '10.0.0.5', owner: 'calico-docker:calico' });
  assert.equal(p.commands[1], 'link set cali0123456789a alias calico-docker:calico');
  assert.throws(() => planEndpoint({ ...base, ipv4: '10.0.0.5', owner: 'two words' }), /invalid link owner/);
  const links = [
    { ifname: 'lo' },
    { ifname: 'cali00000000001', ifalias: 'calico-docker:calico' }, // live endpoint
    { ifname: 'cali00000000002', ifalias: 'calico-docker:calico' }, // stale
    { ifname: 'cali00000000003', ifalias: 'calico-docker:other' }, // another node's
    { ifname: 'cali00000000004' }, // untagged: not ours to judge
    { ifname: 'ctmp00000000002', ifalias: 'calico-docker:calico' }, // goes with its cali end
  ];
  assert.deepEqual(planSweep(links, 'calico-docker:calico', new Set(['cali00000000001'])), ['cali00000000002']);
});
