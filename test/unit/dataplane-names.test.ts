import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GATEWAY_V6,
  HOST_VETH_MAC,
  containerMac,
  hostIfName,
  linkLocalFromMac,
  peerIfName,
} from '../../src/names';

const EP = '3f2a9c81d0e4b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2';

test('host interface name is cali + the first 11 hex chars of the endpoint id', () => {
  assert.equal(hostIfName(EP), 'cali3f2a9c81d0e');
  assert.equal(hostIfName(EP.toUpperCase()), 'cali3f2a9c81d0e');
  assert.equal(hostIfName(EP).length, 15);
});

test('a non-hex endpoint id is hashed to a valid, stable 15-char name', () => {
  const a = hostIfName('my endpoint/with:odd chars');
  assert.match(a, /^cali[0-9a-f]{11}$/);
  assert.equal(a, hostIfName('my endpoint/with:odd chars'));
  assert.notEqual(a, hostIfName('another endpoint'));
});

test('the container end has its own prefix and the same suffix', () => {
  assert.equal(peerIfName(EP), 'ctmp3f2a9c81d0e');
  assert.ok(!peerIfName(EP).startsWith('cali'), 'policy matches cali+; the peer must not');
});

test('container MAC is locally administered unicast and stable per endpoint', () => {
  const mac = containerMac(EP);
  assert.match(mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  const first = parseInt(mac.slice(0, 2), 16);
  assert.equal(first & 0x01, 0, 'unicast');
  assert.equal(first & 0x02, 0x02, 'locally administered');
  assert.equal(containerMac(EP), mac);
  assert.notEqual(containerMac(EP.replace(/^3/, '4')), mac);
});

test('IPv6 gateway is the EUI-64 link-local of ee:ee:ee:ee:ee:ee', () => {
  assert.equal(HOST_VETH_MAC, 'ee:ee:ee:ee:ee:ee');
  assert.equal(GATEWAY_V6, 'fe80::ecee:eeff:feee:eeee');
  assert.equal(linkLocalFromMac('02:42:ac:11:00:02'), 'fe80::42:acff:fe11:2');
  assert.throws(() => linkLocalFromMac('zz:ee'), /invalid MAC/);
});
