// Inputs of the BIRD renderer's tests: the unit test checks what each
// renders, the integration test feeds every rendered config to `bird -p`.
import type { BirdInput } from '../../src/bgp/types';

const pools = [
  { cidr: '192.168.0.0/16', family: 4 as const },
  { cidr: 'fd80:24e2:f998:72d6::/64', family: 6 as const },
];
const trinity = [
  { host: 'trinity10', ip: '172.16.0.10' },
  { host: 'trinity20', ip: '172.16.0.20' },
  { host: 'trinity30', ip: '172.16.0.30' },
];
const noPeers = { routeReflectors: [], globalPeers: [] };
/** What the trinity hosts hold: blocks (IPv4 and IPv6) and an address trinity10 borrowed from trinity30's block. */
const held = {
  trinity10: { blocks: ['192.168.0.0/26', 'fd80:24e2:f998:72d6::/122'], borrowed: ['192.168.0.130/32'] },
  trinity20: { blocks: ['192.168.0.64/26'], borrowed: [] },
  trinity30: { blocks: ['192.168.0.192/26', '192.168.0.128/26'], borrowed: [] },
};

export const CASES: Record<string, BirdInput> = {
  mesh3: { hostname: 'trinity20', hosts: trinity, pools, config: noPeers, nodePeers: [], affineBlocks: ['192.168.0.64/26'], hostRoutes: held },
  routeReflector: {
    hostname: 'trinity10',
    hosts: trinity,
    pools,
    config: { routeReflectors: ['172.16.0.1'], globalPeers: [] },
    nodePeers: [],
    affineBlocks: ['192.168.0.0/26'],
    hostRoutes: held,
  },
  globalPeer: {
    hostname: 'trinity10',
    hosts: trinity,
    pools,
    config: { as: '64600', routeReflectors: [], globalPeers: [{ ip: '172.16.0.254', as: '65001' }] },
    nodePeers: [],
    affineBlocks: [],
    hostRoutes: held,
  },
  globalPeerWithMeshOn: {
    hostname: 'trinity10',
    hosts: trinity,
    pools,
    config: { nodeMesh: true, routeReflectors: [], globalPeers: [{ ip: '172.16.0.254', as: '65001' }] },
    nodePeers: [],
    affineBlocks: [],
    hostRoutes: held,
  },
  perNodeAs: {
    hostname: 'trinity10',
    hosts: [{ host: 'trinity10', ip: '172.16.0.10', as: '64512' }, { host: 'trinity20', ip: '172.16.0.20', as: '64513' }, { host: 'trinity30', ip: '172.16.0.30' }],
    pools,
    config: noPeers,
    nodePeers: [{ ip: '172.16.0.253', as: '65002' }, { ip: '172.16.0.20', as: '64513' }],
    affineBlocks: [],
    hostRoutes: held,
  },
  ipv6: {
    hostname: 'a',
    hosts: [{ host: 'a', ip: '10.0.0.1', ip6: 'fd00::1' }, { host: 'b', ip: '10.0.0.2', ip6: 'fd00::2' }, { host: 'c', ip: '10.0.0.3' }],
    pools,
    config: { routeReflectors: [], globalPeers: [] },
    nodePeers: [{ ip: 'fd00:0:0:0:0:0:0:99', as: '65003' }],
    affineBlocks: ['fd80:24e2:f998:72d6::40/122', '192.168.1.0/26'],
    // b holds IPv4 and IPv6 blocks; c holds nothing yet.
    hostRoutes: { a: { blocks: ['fd80:24e2:f998:72d6::40/122', '192.168.1.0/26'], borrowed: [] }, b: { blocks: ['192.168.1.64/26', 'fd80:24e2:f998:72d6::80/122'], borrowed: ['fd80:24e2:f998:72d6::5/128'] } },
  },
  noPools: { hostname: 'a', hosts: [{ host: 'a', ip: '10.0.0.1' }], pools: [], config: noPeers, nodePeers: [], affineBlocks: [], hostRoutes: {} },
  /** Every kind of session with a password (the widest BIRD accepts: 80 printable characters, spaces and braces included). */
  passwords: {
    hostname: 'trinity10',
    hosts: trinity,
    pools,
    config: {
      nodeMesh: true,
      meshPassword: 'mesh pw {;} #1',
      routeReflectors: ['172.16.0.1', '172.16.0.2'],
      rrPasswords: { '172.16.0.1': "rr'pw" },
      globalPeers: [{ ip: '172.16.0.254', as: '65001', password: '~'.repeat(80) }],
    },
    nodePeers: [{ ip: '172.16.0.253', as: '65002', password: 'node/pw' }],
    affineBlocks: ['192.168.0.0/26'],
    hostRoutes: held,
  },
  /** IP-in-IP: one pool always, one cross-subnet, a plain pool nested in the always one (routed natively). */
  ipip: {
    hostname: 'trinity10',
    hosts: trinity,
    pools: [
      { cidr: '192.168.0.0/16', family: 4, ipipMode: 'always' },
      { cidr: '192.168.7.0/24', family: 4 },
      { cidr: '10.99.0.0/16', family: 4, ipipMode: 'cross-subnet' },
      pools[1]!,
    ],
    localSubnet: '172.16.0.0/24',
    config: noPeers,
    nodePeers: [],
    affineBlocks: ['192.168.0.0/26'],
    hostRoutes: held,
  },
  /** Cross-subnet with the local subnet unknown: every host counts as remote. */
  ipipNoSubnet: {
    hostname: 'trinity10',
    hosts: trinity,
    pools: [{ cidr: '10.99.0.0/16', family: 4, ipipMode: 'cross-subnet' }],
    config: noPeers,
    nodePeers: [],
    affineBlocks: [],
    hostRoutes: held,
  },
};
