// The pure parts of `calicoctl node remove`: its refusals (what a person
// reads when the host is alive or still has endpoint records) and when a
// host counts as gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aliveMessage, endpointsMessage, isGone } from '../../src/cli/commands/node-remove';

test('alive: names the lease key, the lease, its TTL and the node holding it', () => {
  const m = aliveMessage('h2', {
    key: '/calico/v1/host/h2/node',
    leaseId: '7587868',
    ttlS: 12,
    grantedS: 15,
    holder: { id: 'x', pid: 4711, machine: 'm1', stateDir: '/var/lib/calico', since: 1 },
  });
  assert.equal(
    m,
    'Host h2 is alive: its node holds the registration lease /calico/v1/host/h2/node (lease 7587868, TTL 15 s, 12 s left unless its node renews it; ' +
      'node pid 4711 on machine m1, state dir /var/lib/calico). Stop that node (calicoctl node stop on h2); if it died, its lease expires within 15 s: run this again then. Nothing was changed.',
  );
  assert.match(aliveMessage('h2', { key: 'k', leaseId: '0' }), /\(a key without a lease, which only its node removes; an unreadable holder\)/);
  assert.match(aliveMessage('h2', { key: 'k', leaseId: '9', ttlS: -1, grantedS: 15 }), /TTL 15 s, expiring unless/);
});

test('endpoint records without --remove-endpoints: says how many and what to do', () => {
  assert.equal(
    endpointsMessage('h2', 1),
    "Host h2 still has 1 endpoint record (its containers, as every host's policy sees them): rerun with --remove-endpoints to remove it together with its addresses. Nothing was changed.",
  );
  assert.match(endpointsMessage('h2', 3), /still has 3 endpoint records .* to remove them together/);
});

test('a host is gone when nothing of it is left', () => {
  const none = { endpoints: 0, hostKeys: 0, allocations: 0, blocks: 0, affinities: 0 };
  assert.equal(isGone(none), true);
  for (const k of Object.keys(none) as (keyof typeof none)[]) assert.equal(isGone({ ...none, [k]: 1 }), false, k);
});
