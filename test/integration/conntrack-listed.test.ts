// Whether a reused address has conntrack entries, read from a real kernel's
// /proc/net/nf_conntrack (the check that spares a Join the conntrack process
// when there is nothing to delete): IPv4 and IPv6 (which the table prints as
// eight groups of four digits), as a source and as a destination, and an
// address with no entry.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Netns, teardownAll, isRoot } from '../harness';
import { conntrackSpelling, listedIn } from '../../src/policy/conntrack';

after(teardownAll);

const skip = !isRoot();

test('listedIn: the addresses of flows in a real conntrack table are found, others are not', { skip }, async () => {
  const h = await Netns.create('cdct');
  await h.ok('ip', ['link', 'set', 'lo', 'up']);
  await h.ok('ip', ['addr', 'add', '10.77.0.1/32', 'dev', 'lo']);
  await h.ok('ip', ['addr', 'add', '10.77.0.2/32', 'dev', 'lo']);
  await h.ok('ip', ['addr', 'add', 'fd77::1:2/128', 'dev', 'lo', 'nodad']);
  // A conntrack rule makes the namespace track its flows.
  await h.ok('iptables', ['-A', 'OUTPUT', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT']);
  await h.ok('ip6tables', ['-A', 'OUTPUT', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'ACCEPT']);
  const empty = (await h.ok('cat', ['/proc/net/nf_conntrack'])).stdout;
  assert.deepEqual(listedIn(empty, [{ family: 4, address: '10.77.0.2' }]), []);
  await h.ok('ping', ['-c1', '-W1', '-I', '10.77.0.1', '10.77.0.2']);
  await h.ok('ping', ['-6', '-c1', '-W1', 'fd77::1:2']);
  const table = (await h.ok('cat', ['/proc/net/nf_conntrack'])).stdout;
  const targets = [
    { family: 4 as const, address: '10.77.0.1' },
    { family: 4 as const, address: '10.77.0.2' },
    { family: 6 as const, address: 'fd77::1:2' },
    { family: 4 as const, address: '10.77.0.3' },
    { family: 6 as const, address: 'fd77::1:3' },
    { family: 4 as const, address: '10.77.0.20' },
  ];
  assert.deepEqual(listedIn(table, targets), targets.slice(0, 3), `found in:\n${table}`);
  assert.equal(conntrackSpelling({ family: 6, address: 'fd77::1:2' }), 'fd77:0000:0000:0000:0000:0000:0001:0002');
});
