import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeMissing, findMissing, requirementsFor } from '../../src/system/deps';

const full = { proxyOnly: false, mayEmbedEtcd: true, dockerSocket: '/var/run/docker.sock' };
const everything = (p: string) => p !== '';

test('system deps: a full node with the embedded member needs dockerd, iptables, ipset, BIRD, conntrack, ip and etcd, each with its Debian package', () => {
  const pkgs = requirementsFor(full).map((r) => `${r.name}:${r.debianPackage}`);
  assert.deepEqual(pkgs, ['dockerd:docker.io', 'iptables:iptables', 'ipset:ipset', 'bird:bird2', 'conntrack:conntrack', 'ip:iproute2', 'etcd:etcd-server']);
  assert.deepEqual(findMissing(requirementsFor(full), everything), []);
});

test('system deps: etcd only when the node may start its own member; dockerd only for a local socket; the proxy alone needs only dockerd', () => {
  assert.ok(!requirementsFor({ ...full, mayEmbedEtcd: false }).some((r) => r.name === 'etcd'));
  assert.ok(!requirementsFor({ ...full, dockerSocket: undefined }).some((r) => r.name === 'dockerd'));
  assert.deepEqual(requirementsFor({ ...full, proxyOnly: true }).map((r) => r.name), ['dockerd']);
});

test('system deps: each missing program is named with its package, one install line for all', () => {
  const absent = new Set(['conntrack', '/usr/sbin/bird', '/usr/sbin/birdc', 'ip6tables-save']);
  const missing = findMissing(requirementsFor(full), (p) => !absent.has(p), () => true);
  assert.deepEqual(missing.map((m) => m.programs), [['ip6tables-save'], ['/usr/sbin/bird', '/usr/sbin/birdc'], ['conntrack']]);
  const text = describeMissing(missing, full);
  assert.match(text, /^calicoctl node cannot start: this host lacks what the node runs:\n/);
  assert.match(text, /  conntrack: ends connections that a policy change refuses; Debian package conntrack\n/);
  assert.match(text, /  \/usr\/sbin\/bird, \/usr\/sbin\/birdc: .*; Debian package bird2\n/);
  assert.match(text, /\nInstall with: apt-get install iptables bird2 conntrack\n$/);
});

test('system deps: dockerd is satisfied by its listening socket (a dockerd installed elsewhere), else named with docker.io', () => {
  const noDockerd = (p: string) => p !== 'dockerd';
  assert.deepEqual(findMissing(requirementsFor(full), noDockerd, (p) => p === '/var/run/docker.sock'), []);
  const missing = findMissing(requirementsFor(full), noDockerd, () => false);
  const text = describeMissing(missing, full);
  assert.match(text, /  dockerd \(and there is no \/var\/run\/docker.sock\): .*Debian package docker.io\n/);
  assert.match(text, /Then start dockerd/);
});

test('system deps: a missing etcd says how to do without it', () => {
  const missing = findMissing(requirementsFor(full), (p) => p !== '/usr/bin/etcd');
  assert.match(describeMissing(missing, full), /Debian package etcd-server\nInstall with: apt-get install etcd-server\nOr point the node at an etcd cluster \(--etcd-endpoints/);
});
