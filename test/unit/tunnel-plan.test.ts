import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderBirdConfig } from '../../src/bgp/render';
import type { Pool } from '../../src/datastore/pool-store';
import { PoolStore, poolFromValue } from '../../src/datastore/pool-store';
import { ipipHostsIpset, ipipInputChain } from '../../src/names/kernel';
import { endpointMtu, routeCommands, tunnelledTo, tunnelMtu, tunnelPlan, underlayOf } from '../../src/tunnel/plan';
import { renderIpipPolicy } from '../../src/tunnel/policy';
import { renderTunnelStatus } from '../../src/tunnel/status';
import { CASES } from './bgp-render-cases';

const hosts = [
  { host: 'h1', ip: '10.220.1.2' },
  { host: 'h2', ip: '10.220.2.2' },
  { host: 'h3', ip: '10.220.1.3' },
  { host: 'h4' },
];
const held = {
  h1: { blocks: ['192.168.0.0/26'], borrowed: [] },
  h2: { blocks: ['192.168.0.64/26', '10.50.0.0/26'], borrowed: ['192.168.0.5/32'] },
  h3: { blocks: ['192.168.0.128/26'], borrowed: [] },
  h4: { blocks: ['192.168.1.0/26'], borrowed: [] },
};
const underlay = { dev: 'eth0', subnet: '10.220.1.0/24', mtu: 1500 };
const pool = (cidr: string, ipipMode?: 'always' | 'cross-subnet'): Pool => ({ cidr, family: 4, natOutgoing: false, ipip: !!ipipMode, ...(ipipMode ? { ipipMode } : {}) });

test('tunnelPlan: always: every other host\'s blocks and borrowed addresses in an IP-in-IP pool, via its --ip; MTU 20 below the underlay', () => {
  const p = tunnelPlan({ hostname: 'h1', hosts, pools: [pool('192.168.0.0/16', 'always'), pool('10.50.0.0/16')], hostRoutes: held, underlay });
  assert.equal(p.enabled, true);
  assert.equal(p.mtu, 1480);
  assert.deepEqual(p.routes, [
    { dst: '192.168.0.5/32', via: '10.220.2.2', host: 'h2' },
    { dst: '192.168.0.64/26', via: '10.220.2.2', host: 'h2' },
    { dst: '192.168.0.128/26', via: '10.220.1.3', host: 'h3' },
  ]);
  assert.deepEqual(p.ipipPools, ['192.168.0.0/16']);
  assert.deepEqual(p.nodeAddresses, ['10.220.1.2', '10.220.1.3', '10.220.2.2']);
});

test('tunnelPlan: cross-subnet: only hosts outside this host\'s subnet; same-subnet hosts are left to BIRD', () => {
  const p = tunnelPlan({ hostname: 'h1', hosts, pools: [pool('192.168.0.0/16', 'cross-subnet')], hostRoutes: held, underlay });
  assert.deepEqual(p.routes.map((r) => r.dst), ['192.168.0.5/32', '192.168.0.64/26']);
  // Unknown subnet: every other host is remote (the BIRD filter says the same).
  const q = tunnelPlan({ hostname: 'h1', hosts, pools: [pool('192.168.0.0/16', 'cross-subnet')], hostRoutes: held });
  assert.deepEqual(q.routes.map((r) => r.host), ['h2', 'h2', 'h3']);
  assert.equal(q.mtu, undefined);
});

test('tunnelPlan: no IP-in-IP pool: disabled, no routes; a plain pool nested in an IP-in-IP one is native', () => {
  const off = tunnelPlan({ hostname: 'h1', hosts, pools: [pool('192.168.0.0/16')], hostRoutes: held, underlay });
  assert.equal(off.enabled, false);
  assert.deepEqual(off.routes, []);
  const nested = tunnelPlan({ hostname: 'h1', hosts, pools: [pool('192.168.0.0/16', 'always'), pool('192.168.0.64/26')], hostRoutes: held, underlay });
  assert.deepEqual(nested.routes.map((r) => r.dst), ['192.168.0.5/32', '192.168.0.128/26']);
});

test('tunnelledTo, tunnelMtu, endpointMtu', () => {
  assert.equal(tunnelledTo('always', '10.220.1.3', underlay), true);
  assert.equal(tunnelledTo('cross-subnet', '10.220.1.3', underlay), false);
  assert.equal(tunnelledTo('cross-subnet', '10.220.2.2', underlay), true);
  assert.equal(tunnelMtu(1500), 1480);
  assert.equal(tunnelMtu(80), undefined);
  assert.equal(tunnelMtu(undefined), undefined);
  const pools = [pool('192.168.0.0/16', 'always'), pool('10.50.0.0/16')];
  assert.equal(endpointMtu('192.168.3.4', pools, 9000), 8980);
  assert.equal(endpointMtu('10.50.0.1', pools, 9000), undefined);
  assert.equal(endpointMtu(undefined, pools, 9000), undefined);
});

test('underlayOf: the interface holding --ip, its subnet and MTU, from ip -j addr', () => {
  const json = JSON.stringify([
    { ifname: 'lo', mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] },
    { ifname: 'eth0', mtu: 1400, addr_info: [{ family: 'inet6', local: 'fe80::1', prefixlen: 64 }, { family: 'inet', local: '10.220.1.2', prefixlen: 24 }] },
  ]);
  assert.deepEqual(underlayOf(json, '10.220.1.2'), { dev: 'eth0', subnet: '10.220.1.0/24', mtu: 1400 });
  assert.equal(underlayOf(json, '10.9.9.9'), undefined);
  assert.equal(underlayOf('', '10.9.9.9'), undefined);
});

test('routeCommands: replace what is missing or different, delete ours no longer wanted, leave the rest', () => {
  const plan = { routes: [{ dst: '192.168.0.64/26', via: '10.220.2.2', host: 'h2' }, { dst: '192.168.0.5/32', via: '10.220.2.2', host: 'h2' }, { dst: '192.168.0.128/26', via: '10.220.1.3', host: 'h3' }] };
  const current = [
    { dst: '192.168.0.64/26', gateway: '10.220.2.2', dev: 'tunl0', flags: ['onlink'] },
    { dst: '192.168.0.5', gateway: '10.220.9.9', dev: 'tunl0', flags: ['onlink'] },
    { dst: '192.168.1.0/26', gateway: '10.220.4.4', dev: 'tunl0', flags: ['onlink'] },
  ];
  assert.deepEqual(routeCommands(plan, current, 'tunl0', 80), [
    'route replace 192.168.0.5/32 via 10.220.2.2 dev tunl0 onlink proto 80',
    'route replace 192.168.0.128/26 via 10.220.1.3 dev tunl0 onlink proto 80',
    'route del 192.168.1.0/26 proto 80',
  ]);
  assert.deepEqual(routeCommands({ routes: [] }, [], 'tunl0', 80), []);
});

test('renderIpipPolicy: protocol 4 accepted from node addresses only, the rest dropped; nothing when IP-in-IP is off', () => {
  const s = renderIpipPolicy({ enabled: true, nodeAddresses: ['10.220.1.2', '10.220.2.2'] });
  assert.deepEqual(s.v4.ipsets, [{ name: ipipHostsIpset(), type: 'hash:ip', family: 4, members: ['10.220.1.2', '10.220.2.2'] }]);
  assert.deepEqual(s.v4.chains, [{ table: 'filter', name: ipipInputChain(), rules: [`-p 4 -m set --match-set ${ipipHostsIpset()} src -j ACCEPT`, '-p 4 -j DROP'] }]);
  assert.deepEqual(s.v4.hooks, [{ table: 'filter', chain: 'INPUT', rule: `-p 4 -j ${ipipInputChain()}`, position: 'top' }]);
  assert.deepEqual(s.v6, { chains: [], hooks: [], ipsets: [] });
  const off = renderIpipPolicy({ enabled: false, nodeAddresses: ['10.220.1.2'] });
  assert.deepEqual(off.v4, { chains: [], hooks: [], ipsets: [] });
});

test('BIRD: routes the node tunnels stay out of the kernel; same-subnet next hops of cross-subnet pools and nested plain pools do not', () => {
  const conf = renderBirdConfig(CASES.ipip!);
  assert.match(conf, /filter calico_kernel_v4 \{\n  if source = RTS_BGP && calico_tunnelled_v4\(\) then reject;/);
  assert.match(conf, /if net ~ \[ 192\.168\.7\.0\/24\+ \] then return false;/);
  assert.match(conf, /if net ~ \[ 192\.168\.0\.0\/16\+ \] then return true;/);
  assert.match(conf, /if net ~ \[ 10\.99\.0\.0\/16\+ \] && !\(bgp_next_hop ~ 172\.16\.0\.0\/24\) then return true;/);
  assert.match(renderBirdConfig(CASES.ipipNoSubnet!), /if net ~ \[ 10\.99\.0\.0\/16\+ \] then return true;/);
  // No IP-in-IP pool: nothing is kept out.
  assert.match(renderBirdConfig(CASES.mesh3!), /function calico_tunnelled_v4\(\) \{\n  return false;\n\}/);
  assert.doesNotMatch(conf, /calico_tunnelled_v6/);
});

test('pool options: --ipip is always, --ipip-mode cross-subnet is stored as such; IPv6 refuses it with the 2015 message', () => {
  assert.deepEqual(poolFromValue(4, { cidr: '10.1.0.0/16', ipip: 'tunl0' }), { cidr: '10.1.0.0/16', family: 4, natOutgoing: false, ipip: true, ipipMode: 'always' });
  assert.deepEqual(poolFromValue(4, { cidr: '10.1.0.0/16', ipip: 'tunl0', ipip_mode: 'cross-subnet' }).ipipMode, 'cross-subnet');
  assert.equal(poolFromValue(4, { cidr: '10.1.0.0/16' }).ipipMode, undefined);
  assert.throws(() => PoolStore.parse('fd00::/64', { ipip: true }), /IP in IP not supported for IPv6 pools: fd00::\/64 is IPv6/);
  assert.throws(() => PoolStore.parse('fd00::/64', { ipipMode: 'cross-subnet' }), /IPv4 pools only/);
  assert.throws(() => PoolStore.parse('10.0.0.0/16', { ipipMode: 'sometimes' as never }), /not one of always, cross-subnet/);
});

test('renderTunnelStatus: device, MTU, address, underlay and each route; or why the tunnel is not in place; nothing when off', () => {
  const pools = [{ cidr: '10.66.0.0/16', mode: 'always' }];
  assert.deepEqual(
    renderTunnelStatus({
      enabled: true, device: 'tunl0', mtu: 1480, address: '10.66.0.63', underlay: { dev: 'eth0', subnet: '10.220.1.0/24', mtu: 1500 }, pools,
      routes: [{ dst: '10.66.0.64/26', via: '10.220.2.2', host: 'h2' }],
    }),
    ['IP-in-IP (pools 10.66.0.0/16 always): tunl0 up, MTU 1480, address 10.66.0.63; underlay eth0 10.220.1.0/24; 1 route through it', '  10.66.0.64/26 via 10.220.2.2 (h2)'],
  );
  assert.deepEqual(renderTunnelStatus({ enabled: true, device: 'tunl0', pools, routes: [], error: 'cannot bring up tunl0: no' }), [
    'IP-in-IP (pools 10.66.0.0/16 always): tunl0 NOT in place: cannot bring up tunl0: no',
  ]);
  assert.deepEqual(renderTunnelStatus({ enabled: false, device: 'tunl0', pools: [], routes: [] }), []);
  assert.deepEqual(renderTunnelStatus(undefined), []);
});
