import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockOwnership, hostRoutesFrom } from '../../src/bgp/routes-owned';
import type { BlockValue } from '../../src/datastore/schemas';

function blockValue(cidr: string, affinity: string | null, allocated: Record<number, string>): BlockValue {
  const allocations: BlockValue['allocations'] = Array.from({ length: 64 }, (_, i) => (allocated[i] ? { h: `h${i}`, s: 1, t: 0, host: allocated[i]! } : null));
  return { cidr, pool: cidr, affinity, claimTime: 0, seq: 1, allocations, unallocated: allocations.flatMap((a, i) => (a ? [] : [i])) };
}

test('route ownership: a block is its affine host\'s; an address allocated by another host is that host\'s, as a /32 or /128', () => {
  const a = blockOwnership(blockValue('10.0.0.0/26', 'host:h1', { 1: 'h1', 5: 'h2', 63: 'h3' }));
  assert.deepEqual(a, { cidr: '10.0.0.0/26', host: 'h1', borrowed: { '10.0.0.5/32': 'h2', '10.0.0.63/32': 'h3' } });
  // A block nobody owns: every allocated address is its allocator's.
  const b = blockOwnership(blockValue('fd80::40/122', null, { 0: 'h2' }));
  assert.deepEqual(b, { cidr: 'fd80::40/122', host: undefined, borrowed: { 'fd80::40/128': 'h2' } });
  const c = blockOwnership(blockValue('10.0.0.64/26', 'host:h2', {}));
  assert.deepEqual(hostRoutesFrom([a, b, c]), {
    h1: { blocks: ['10.0.0.0/26'], borrowed: [] },
    h2: { blocks: ['10.0.0.64/26'], borrowed: ['10.0.0.5/32', 'fd80::40/128'] },
    h3: { blocks: [], borrowed: ['10.0.0.63/32'] },
  });
  assert.deepEqual(hostRoutesFrom([c, b, a]), hostRoutesFrom([a, b, c]), 'order does not matter');
});
