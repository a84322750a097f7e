import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkId,
  keys,
  parseAffinityKey,
  parseBlockKey,
  parseEndpointKey,
  parseHandleKey,
  parseHostLeafKey,
  parsePoolKey,
  parseProfileKey,
} from '../../src/datastore/keys';
import { EndpointValue, PoolValue, ProfileRulesValue } from '../../src/datastore/schemas';

test('the 2015 /calico/v1 layout', () => {
  assert.equal(keys.ready(), '/calico/v1/Ready');
  assert.equal(keys.interfacePrefix(), '/calico/v1/config/InterfacePrefix');
  assert.equal(keys.bgpAs(), '/calico/v1/config/bgp_as');
  assert.equal(keys.bgpPeerRr(4, '172.16.0.1'), '/calico/v1/config/bgp_peer_rr_v4/172.16.0.1');
  assert.equal(keys.bgpPeerRr(6, 'fd00::1'), '/calico/v1/config/bgp_peer_rr_v6/fd00::1');
  assert.equal(keys.hostBirdIp('t10'), '/calico/v1/host/t10/bird_ip');
  assert.equal(keys.hostBird6Ip('t10'), '/calico/v1/host/t10/bird6_ip');
  assert.equal(keys.hostConfigMarker('t10'), '/calico/v1/host/t10/config/marker');
  assert.equal(keys.endpoint('t10', 'cid', 'epid'), '/calico/v1/host/t10/workload/docker/cid/endpoint/epid');
  assert.equal(keys.profileTags('WEB'), '/calico/v1/policy/profile/WEB/tags');
  assert.equal(keys.profileRules('WEB'), '/calico/v1/policy/profile/WEB/rules');
  assert.equal(keys.pool(4, '192.168.0.0/16'), '/calico/v1/ipam/v4/pool/192.168.0.0-16');
  assert.equal(keys.pool(6, 'fd80:24e2:f998:72d6::/64'), '/calico/v1/ipam/v6/pool/fd80:24e2:f998:72d6::-64');
});

test('block IPAM layout', () => {
  assert.equal(keys.block(4, '10.0.0.0/26'), '/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26');
  assert.equal(keys.affinity('h', 6, 'fd00::/122'), '/calico/ipam/v2/host/h/ipv6/block/fd00::-122');
  assert.equal(keys.handle('resv-1'), '/calico/ipam/v2/handle/resv-1');
});

test('parsers invert the builders and reject other keys', () => {
  assert.deepEqual(parseEndpointKey(keys.endpoint('h', 'c', 'e')), { host: 'h', containerId: 'c', endpointId: 'e' });
  assert.equal(parseEndpointKey('/calico/v1/host/h/bird_ip'), undefined);
  assert.deepEqual(parseHostLeafKey(keys.hostBird6Ip('h')), { host: 'h', leaf: 'bird6_ip' });
  assert.deepEqual(parseProfileKey(keys.profileRules('P')), { name: 'P', leaf: 'rules' });
  assert.deepEqual(parsePoolKey(keys.pool(6, 'fd00::/64')), { family: 6, cidr: 'fd00::/64' });
  assert.deepEqual(parseBlockKey(keys.block(4, '10.0.0.64/26')), { family: 4, cidr: '10.0.0.64/26' });
  assert.deepEqual(parseAffinityKey(keys.affinity('h', 4, '10.0.0.64/26')), { host: 'h', family: 4, cidr: '10.0.0.64/26' });
  assert.equal(parseHandleKey(keys.handle('x')), 'x');
  assert.equal(parseHandleKey('/calico/ipam/v2/handle/'), undefined);
});

test('ids that would shift the layout are refused', () => {
  assert.doesNotThrow(() => checkId('host', 'trinity-10.lab_x'));
  assert.throws(() => checkId('host', 'a/b'), /invalid host "a\/b"/);
  assert.throws(() => checkId('host', ''), /invalid host/);
});

test('value schemas: the 2015 shapes load, bad ones say why', () => {
  const ep = EndpointValue.parse({
    state: 'active',
    name: 'cali1d9e9624cdb',
    mac: '32:24:81:2a:cb:bd',
    'container:if_name': 'eth1',
    profile_id: 'WEB',
    ipv4_nets: ['192.168.1.1/32'],
    ipv6_nets: [],
    ipv4_gateway: '172.17.8.101',
    ipv6_gateway: null,
  });
  assert.deepEqual(ep.profile_ids, ['WEB'], 'legacy profile_id read as a list');
  const r = EndpointValue.safeParse({ state: 'up', name: 'x', mac: 'zz', profile_ids: [], ipv4_nets: ['nope'], ipv6_nets: [] });
  assert.ok(!r.success);
  assert.deepEqual(r.error.issues.map((i) => i.path.join('.')).sort(), ['ipv4_nets.0', 'mac', 'state']);
  assert.ok(PoolValue.safeParse({ cidr: '10.0.0.0/16', ipip: 'tunl0', masquerade: true }).success);
  assert.ok(!PoolValue.safeParse({ cidr: 'x' }).success);
  // The blog post's profile rules, with felix's null-dropping and unknown-key rejection.
  assert.ok(
    ProfileRulesValue.safeParse({
      id: 'PROF_GROUP1',
      inbound_rules: [{ action: 'allow', src_tag: 'PROF_GROUP1', protocol: null }, { action: 'allow', protocol: 'icmp', icmp_type: 8 }],
      outbound_rules: [{ action: 'allow' }],
    }).success,
  );
  assert.ok(!ProfileRulesValue.safeParse({ inbound_rules: [{ action: 'allow', colour: 'red' }], outbound_rules: [] }).success);
  assert.ok(!ProfileRulesValue.safeParse({ inbound_rules: [{ dst_ports: ['90:80'] }], outbound_rules: [] }).success);
  assert.ok(!ProfileRulesValue.safeParse({ inbound_rules: [{ icmp_code: 1 }], outbound_rules: [] }).success);
});
