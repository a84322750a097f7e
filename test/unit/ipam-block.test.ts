import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockValue } from '../../src/datastore/schemas';
import {
  allocationsIn,
  cloneBlock,
  describeOwner,
  freeCount,
  newBlock,
  ordinalsOf,
  releaseHandle,
  releaseOrdinal,
  takeNext,
  takeOrdinal,
  toAllocation,
} from '../../src/ipam/block';
import { parseCidr } from '../../src/address/cidr';

const rec = (h: string) => ({ h, t: 1000, host: 'n1', a: { container: `c-${h}` } });

function block(): BlockValue {
  return newBlock(parseCidr('10.0.0.64/26'), '10.0.0.0/16', 'n1', 5);
}

test('a new block is valid, empty, affine to its host', () => {
  const b = block();
  assert.ok(BlockValue.safeParse(b).success);
  assert.equal(freeCount(b), 64);
  assert.equal(b.affinity, 'host:n1');
});

test('allocation takes the oldest-freed ordinal; freed ordinals are reused last (FIFO)', () => {
  const b = block();
  assert.equal(takeNext(b, rec('a')), 0);
  assert.equal(takeNext(b, rec('b')), 1);
  assert.equal(takeNext(b, rec('c')), 2);
  assert.ok(releaseOrdinal(b, 1, 'b'));
  assert.ok(releaseOrdinal(b, 0, 'a'));
  assert.equal(takeNext(b, rec('d')), 3, 'never-used ordinals first');
  for (let i = 4; i < 64; i++) takeNext(b, rec(`x${i}`));
  assert.equal(takeNext(b, rec('e')), 1, 'then the one freed first');
  assert.equal(takeNext(b, rec('f')), 0);
  assert.equal(takeNext(b, rec('g')), undefined, 'full');
  assert.ok(BlockValue.safeParse(b).success);
});

test('sequence numbers make a stale release a no-op; the wrong handle frees nothing', () => {
  const b = block();
  takeNext(b, rec('old'));
  const seqOld = b.allocations[0]!.s;
  assert.ok(!releaseOrdinal(b, 0, 'someone-else'));
  assert.ok(releaseOrdinal(b, 0, 'old', seqOld));
  assert.ok(takeOrdinal(b, 0, rec('old')));
  assert.ok(!releaseOrdinal(b, 0, 'old', seqOld), 'same handle, newer allocation: stays');
  assert.ok(releaseOrdinal(b, 0, 'old', b.allocations[0]!.s));
  assert.ok(!releaseOrdinal(b, 0, 'old'), 'idempotent');
});

test('explicit ordinals, release by handle, conversion to allocations', () => {
  const b = block();
  assert.ok(takeOrdinal(b, 10, rec('h')));
  assert.ok(!takeOrdinal(b, 10, rec('other')));
  takeNext(b, rec('h'));
  assert.deepEqual(ordinalsOf(b, 'h'), [0, 10]);
  const a = toAllocation(b, 10);
  assert.equal(a.address, '10.0.0.74');
  assert.equal(a.block, '10.0.0.64/26');
  assert.equal(a.pool, '10.0.0.0/16');
  assert.deepEqual(a.attrs, { container: 'c-h' });
  assert.equal(describeOwner(b.allocations[10]!), 'handle h (container c-h)');
  const c = cloneBlock(b);
  assert.deepEqual(releaseHandle(c, 'h'), [0, 10]);
  assert.equal(allocationsIn(c).length, 0);
  assert.equal(allocationsIn(b).length, 2, 'clone is independent');
  assert.equal(c.unallocated.slice(-2).join(), '0,10');
});

test('the block schema rejects inconsistent blocks', () => {
  const b = block();
  b.unallocated.push(0);
  assert.ok(!BlockValue.safeParse(b).success, 'ordinal free twice');
  const c = block();
  takeNext(c, rec('a'));
  c.unallocated.push(0);
  assert.ok(!BlockValue.safeParse(c).success, 'allocated and free');
});
