import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bgpConfigFromRaw, birdInputFromSnapshot } from '../../src/bgp/input';
import { keys, parseBgpConfigKey } from '../../src/datastore/keys';

test('BGP config keys parse back', () => {
  assert.deepEqual(parseBgpConfigKey(keys.bgpAs()), { kind: 'as' });
  assert.deepEqual(parseBgpConfigKey(keys.bgpNodeMesh()), { kind: 'nodeMesh' });
  assert.deepEqual(parseBgpConfigKey(keys.bgpPeerRr(6, 'fd00::1')), { kind: 'routeReflector', family: 6, ip: 'fd00::1' });
  assert.deepEqual(parseBgpConfigKey(keys.bgpPeer(4, '10.0.0.1')), { kind: 'peer', family: 4, ip: '10.0.0.1' });
  assert.deepEqual(parseBgpConfigKey(keys.hostBgpPeer('h1', 6, 'fd00::9')), { kind: 'peer', family: 6, ip: 'fd00::9', host: 'h1' });
  assert.equal(parseBgpConfigKey('/calico/v1/host/h1/bgp_peer_rr_v4/10.0.0.1'), undefined);
  assert.deepEqual(parseBgpConfigKey(keys.bgpNodeMeshPassword()), { kind: 'meshPassword' });
  assert.deepEqual(parseBgpConfigKey(keys.bgpRrPassword(4, '172.16.0.1')), { kind: 'rrPassword', family: 4, ip: '172.16.0.1' });
  assert.equal(parseBgpConfigKey(keys.interfacePrefix()), undefined);
});

test('the renderer input from a snapshot: settings, route reflectors, global peers, only this host\'s node peers; bad values reported and skipped', () => {
  const raw = new Map<string, string>([
    [keys.bgpAs(), '64600'],
    [keys.bgpNodeMesh(), '{"enabled":false}'],
    [keys.bgpPeerRr(4, '172.16.0.1'), '172.16.0.1'],
    [keys.bgpPeerRr(4, '172.16.0.2'), 'fd00::2'],
    [keys.bgpPeer(4, '172.16.0.254'), '{"ip":"172.16.0.254","as_num":65001}'],
    [keys.bgpPeer(6, 'fd00::fe'), '{"ip":"FD00::FE","as_num":"65002"}'],
    [keys.bgpPeer(4, '10.9.9.9'), '{"ip":"10.9.9.9","as_num":0}'],
    [keys.hostBgpPeer('me', 4, '10.0.0.9'), '{"ip":"10.0.0.9","as_num":65003}'],
    [keys.hostBgpPeer('other', 4, '10.0.0.8'), '{"ip":"10.0.0.8","as_num":65004}'],
    [keys.interfacePrefix(), 'cali'],
  ]);
  const invalid: string[] = [];
  const { config, nodePeers } = bgpConfigFromRaw(raw, 'me', (k) => invalid.push(k));
  assert.deepEqual(config, {
    as: '64600',
    nodeMesh: false,
    routeReflectors: ['172.16.0.1'],
    globalPeers: [{ ip: '172.16.0.254', as: '65001' }, { ip: 'fd00::fe', as: '65002' }],
  });
  assert.deepEqual(nodePeers, [{ ip: '10.0.0.9', as: '65003' }]);
  assert.deepEqual(invalid, [keys.bgpPeerRr(4, '172.16.0.2'), keys.bgpPeer(4, '10.9.9.9')]);

  const input = birdInputFromSnapshot(
    {
      hosts: new Map([['me', { host: 'me', ip: '10.0.0.1' }]]),
      pools: new Map([['192.168.0.0/16', { cidr: '192.168.0.0/16', family: 4 as const, natOutgoing: false, ipip: false }]]),
      raw: new Map(),
    },
    'me',
    ['192.168.0.0/26'],
    { me: { blocks: ['192.168.0.0/26'], borrowed: [] } },
  );
  assert.deepEqual(input, {
    hostname: 'me',
    hosts: [{ host: 'me', ip: '10.0.0.1' }],
    pools: [{ cidr: '192.168.0.0/16', family: 4 }],
    config: { routeReflectors: [], globalPeers: [] },
    nodePeers: [],
    affineBlocks: ['192.168.0.0/26'],
    hostRoutes: { me: { blocks: ['192.168.0.0/26'], borrowed: [] } },
  });
});

test('passwords from the snapshot: mesh, route reflectors, peers; a peer whose password BIRD cannot hold is left out (never peered with in the clear), a bad mesh or RR password is kept for the renderer to refuse', () => {
  const raw = new Map<string, string>([
    [keys.bgpNodeMeshPassword(), 'mesh-pw'],
    [keys.bgpPeerRr(6, 'fd00::1'), 'fd00::1'],
    [keys.bgpRrPassword(6, 'FD00:0::1'), 'rr pw'],
    [keys.bgpPeer(4, '172.16.0.254'), '{"ip":"172.16.0.254","as_num":65001,"password":"g-pw"}'],
    [keys.bgpPeer(4, '172.16.0.253'), '{"ip":"172.16.0.253","as_num":65001,"password":"bad\\"pw"}'],
    [keys.hostBgpPeer('me', 4, '10.0.0.9'), '{"ip":"10.0.0.9","as_num":65003,"password":"n-pw"}'],
  ]);
  const invalid: string[] = [];
  const { config, nodePeers } = bgpConfigFromRaw(raw, 'me', (k, problem) => invalid.push(`${k}: ${problem}`));
  assert.deepEqual(config, {
    meshPassword: 'mesh-pw',
    routeReflectors: ['fd00::1'],
    rrPasswords: { 'fd00::1': 'rr pw' },
    globalPeers: [{ ip: '172.16.0.254', as: '65001', password: 'g-pw' }],
  });
  assert.deepEqual(nodePeers, [{ ip: '10.0.0.9', as: '65003', password: 'n-pw' }]);
  assert.equal(invalid.length, 1);
  assert.match(invalid[0]!, /bgp_peer_v4\/172\.16\.0\.253: .*double quote/);
  assert.doesNotMatch(invalid[0]!, /bad/, 'the problem never quotes the password');
  const bad = bgpConfigFromRaw(new Map([[keys.bgpNodeMeshPassword(), 'a\nb']]), 'me', (k) => invalid.push(k));
  assert.equal(bad.config.meshPassword, 'a\nb');
  assert.equal(invalid[1], keys.bgpNodeMeshPassword());
});
