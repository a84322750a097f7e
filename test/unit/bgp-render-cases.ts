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

export const CASES: Record<string, BirdInput> = {
  mesh3: { hostname: 'trinity20', hosts: trinity, pools, config: noPeers, nodePeers: [], affineBlocks: ['192.168.0.64/26'] },
  routeReflector: {
    hostname: 'trinity10',
    hosts: trinity,
    pools,
    config: { routeReflectors: ['172.16.0.1'], globalPeers: [] },
    nodePeers: [],
    affineBlocks: ['192.168.0.0/26'],
  },
  globalPeer: {
    hostname: 'trinity10',
    hosts: trinity,
    pools,
    config: { as: '64600', routeReflectors: [], globalPeers: [{ ip: '172.16.0.254', as: '65001' }] },
    nodePeers: [],
    affineBlocks: [],
  },
  globalPeerWithMeshOn: {
    hostname: 'trinity10',
    hosts: trinity,
    pools,
    config: { nodeMesh: true, routeReflectors: [], globalPeers: [{ ip: '172.16.0.254', as: '65001' }] },
    nodePeers: [],
    affineBlocks: [],
  },
  perNodeAs: {
    hostname: 'trinity10',
    hosts: [{ host: 'trinity10', ip: '172.16.0.10', as: '64512' }, { host: 'trinity20', ip: '172.16.0.20', as: '64513' }, { host: 'trinity30', ip: '172.16.0.30' }],
    pools,
    config: noPeers,
    nodePeers: [{ ip: '172.16.0.253', as: '65002' }, { ip: '172.16.0.20', as: '64513' }],
    affineBlocks: [],
  },
  ipv6: {
    hostname: 'a',
    hosts: [{ host: 'a', ip: '10.0.0.1', ip6: 'fd00::1' }, { host: 'b', ip: '10.0.0.2', ip6: 'fd00::2' }, { host: 'c', ip: '10.0.0.3' }],
    pools,
    config: { routeReflectors: [], globalPeers: [] },
    nodePeers: [{ ip: 'fd00:0:0:0:0:0:0:99', as: '65003' }],
    affineBlocks: ['fd80:24e2:f998:72d6::40/122', '192.168.1.0/26'],
  },
  noPools: { hostname: 'a', hosts: [{ host: 'a', ip: '10.0.0.1' }], pools: [], config: noPeers, nodePeers: [], affineBlocks: [] },
};
