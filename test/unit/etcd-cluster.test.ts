import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkClusterTls, checkMemberData, clusterToken, parseClusterList, pickSelf, planCluster, plainClusterWarning } from '../../src/etcd/cluster';

const LIST = 'trinity10=10.0.0.10,trinity20=10.0.0.20,trinity30=10.0.0.30';

test('etcd cluster flag: NAME=IP entries, spaces and empty items ignored, IPv6 with or without brackets', () => {
  assert.deepEqual(parseClusterList(' a=10.0.0.1 , b=10.0.0.2,,c=[fd00::3]'), [
    { name: 'a', ip: '10.0.0.1' },
    { name: 'b', ip: '10.0.0.2' },
    { name: 'c', ip: 'fd00::3' },
  ]);
});

test('etcd cluster flag: bad entries are refused, naming the entry', () => {
  assert.throws(() => parseClusterList(''), /--etcd-cluster: no member given \(expected NAME=IP,NAME=IP,NAME=IP\)/);
  assert.throws(() => parseClusterList('a=10.0.0.1,b'), /"b" is not NAME=IP/);
  assert.throws(() => parseClusterList('a=host.example'), /"host.example" in "a=host.example" is not an IP address/);
  assert.throws(() => parseClusterList('a=10.0.0.1:2380'), /is not an IP address \(the member listens on it: no host names, no port\)/);
  assert.throws(() => parseClusterList('a b=10.0.0.1'), /member name "a b"/);
  assert.throws(() => parseClusterList('=10.0.0.1'), /member name ""/);
  assert.throws(() => parseClusterList('a=10.0.0.1,a=10.0.0.2'), /member name "a" is given twice/);
  assert.throws(() => parseClusterList('a=10.0.0.1,b=10.0.0.1'), /10.0.0.1 is given for both a and b/);
});

test('etcd cluster flag: this host is the entry with the node\'s --ip, else the one with its --name; two different matches are refused', () => {
  const m = parseClusterList(LIST);
  assert.equal(pickSelf(m, { ip: '10.0.0.20', name: 'vm' }).self.name, 'trinity20');
  assert.match(pickSelf(m, { ip: '10.0.0.20', name: 'vm' }).by, /its IP is this node's --ip 10.0.0.20/);
  assert.equal(pickSelf(m, { name: 'trinity30' }).self.ip, '10.0.0.30');
  // --ip on another network than the cluster's: the name decides.
  assert.equal(pickSelf(m, { ip: '192.168.1.30', name: 'trinity30' }).self.name, 'trinity30');
  assert.throws(() => pickSelf(m, { ip: '10.0.0.10', name: 'trinity20' }), /--ip 10.0.0.10 is member trinity10's address, but its --hostname trinity20 is another member's/);
  assert.throws(() => pickSelf(m, { ip: '10.9.9.9', name: 'vm' }), /no member is this host: none has this node's --ip 10.9.9.9 or --hostname vm/);
});

test('etcd cluster flag: the token is the same on every host for the same members in any order, and differs for other members', () => {
  const a = clusterToken(parseClusterList(LIST));
  assert.match(a, /^calico-[0-9a-f]{16}$/);
  assert.equal(clusterToken(parseClusterList('trinity30=10.0.0.30,trinity10=10.0.0.10,trinity20=10.0.0.20')), a);
  assert.notEqual(clusterToken(parseClusterList('trinity10=10.0.0.10,trinity20=10.0.0.20,trinity30=10.0.0.31')), a);
  assert.notEqual(clusterToken(parseClusterList('trinity10=10.0.0.10,trinity20=10.0.0.20')), a);
});

test('etcd cluster flag: the plan gives the member its peer and client URLs on its IP, the initial cluster, and the node every member, its own first', () => {
  const p = planCluster(LIST, { ip: '10.0.0.20', name: 'trinity20', tls: false });
  assert.equal(p.peerUrl, 'http://10.0.0.20:2380');
  assert.equal(p.clientUrl, 'http://10.0.0.20:2379');
  assert.equal(p.initialCluster, 'trinity10=http://10.0.0.10:2380,trinity20=http://10.0.0.20:2380,trinity30=http://10.0.0.30:2380');
  assert.deepEqual(p.endpoints, ['http://10.0.0.20:2379', 'http://10.0.0.10:2379', 'http://10.0.0.30:2379']);
  assert.equal(p.token, clusterToken(p.members));
  const s = planCluster('a=fd00::1,b=fd00::2', { name: 'b', tls: true });
  assert.equal(s.peerUrl, 'https://[fd00::2]:2380');
  assert.deepEqual(s.endpoints, ['https://[fd00::2]:2379', 'https://[fd00::1]:2379']);
  assert.match(plainClusterWarning(p), /WITHOUT TLS: its TCP ports 10.0.0.20:2379 \(clients\) and 10.0.0.20:2380 \(peers\) are unauthenticated plain HTTP/);
});

test('etcd cluster flag: TLS needs all three files or none', () => {
  assert.equal(checkClusterTls({}), false);
  assert.equal(checkClusterTls({ ca: '/ca', cert: '/c', key: '/k' }), true);
  assert.throws(() => checkClusterTls({ cert: '/c', key: '/k' }), /needs all of --etcd-ca-file, --etcd-cert-file and --etcd-key-file/);
});

test('etcd cluster member data: first start is "new"; data of the single-host member or of another member is refused; another list only warns', () => {
  const p = planCluster(LIST, { name: 'trinity10', tls: false });
  const marker = { token: p.token, name: 'trinity10', members: p.members };
  assert.deepEqual(checkMemberData(p, false, undefined, '/s/etcd'), { ok: true, firstStart: true });
  assert.deepEqual(checkMemberData(p, true, marker, '/s/etcd'), { ok: true, firstStart: false });
  const single = checkMemberData(p, true, undefined, '/s/etcd');
  assert.equal(single.ok, false);
  assert.match(!single.ok ? single.reason : '', /\/s\/etcd holds the data of this host's single-host embedded etcd member, not of a member of cluster calico-/);
  const other = checkMemberData(p, true, { ...marker, name: 'trinity20' }, '/s/etcd');
  assert.match(!other.ok ? other.reason : '', /data of cluster member trinity20, but --etcd-cluster makes this host member trinity10/);
  const moved = checkMemberData(p, true, { ...marker, token: 'calico-0000000000000000' }, '/s/etcd');
  assert.equal(moved.ok, true);
  assert.match(moved.ok ? moved.warning ?? '' : '', /etcd keeps its membership in its data and ignores the list now/);
});
