import { test } from 'node:test';
import assert from 'node:assert/strict';
import { candidateBlocks, parseAddress, parseCidr } from '../../src/address/cidr';
import { cidrWithin, narrowestPool, nestedPools, nestingNote, poolNesting, poolOfAddress, poolOrder } from '../../src/address/pools';
import { removedWith, Pool } from '../../src/datastore/pool-store';

const pool = (cidr: string): Pool => ({ cidr, family: cidr.includes(':') ? 6 : 4, natOutgoing: false, ipip: false });
const cidrs = (ps: { cidr: string }[]) => ps.map((p) => p.cidr);

test('cidrWithin: inside or equal, per family', () => {
  assert.ok(cidrWithin(parseCidr('192.168.89.0/24'), parseCidr('192.168.0.0/16')));
  assert.ok(cidrWithin(parseCidr('192.168.0.0/16'), parseCidr('192.168.0.0/16')));
  assert.ok(!cidrWithin(parseCidr('192.168.0.0/16'), parseCidr('192.168.89.0/24')));
  assert.ok(!cidrWithin(parseCidr('192.169.0.0/24'), parseCidr('192.168.0.0/16')));
  assert.ok(!cidrWithin(parseCidr('::/64'), parseCidr('0.0.0.0/0')));
});

test('poolOrder: a nested pool comes before the pools around it; disjoint pools keep address order', () => {
  const ps = ['192.168.0.0/16', '10.0.0.0/8', '192.168.89.0/24', '10.5.0.0/16', '172.16.0.0/12', '192.168.89.128/26', '10.1.0.0/16'].map(pool);
  assert.deepEqual(cidrs(poolOrder(ps)), [
    '10.1.0.0/16',
    '10.5.0.0/16',
    '10.0.0.0/8',
    '172.16.0.0/12',
    '192.168.89.128/26',
    '192.168.89.0/24',
    '192.168.0.0/16',
  ]);
  // Any input order gives the same answer.
  assert.deepEqual(cidrs(poolOrder([...ps].reverse())), cidrs(poolOrder(ps)));
  // Without nesting it is plain address order (what pool show and claims used before).
  assert.deepEqual(cidrs(poolOrder(['10.2.0.0/16', '10.1.0.0/24', '9.0.0.0/8'].map(pool))), ['9.0.0.0/8', '10.1.0.0/24', '10.2.0.0/16']);
});

test('a block or address belongs to the narrowest pool containing it, or to none', () => {
  const ps = ['192.168.0.0/16', '192.168.89.0/24', 'fd80::/64'].map(pool);
  assert.equal(narrowestPool(parseCidr('192.168.89.64/26'), ps)?.cidr, '192.168.89.0/24');
  assert.equal(narrowestPool(parseCidr('192.168.90.0/26'), ps)?.cidr, '192.168.0.0/16');
  assert.equal(narrowestPool(parseCidr('10.0.0.0/26'), ps), undefined);
  assert.equal(narrowestPool(parseCidr('fd80::40/122'), ps)?.cidr, 'fd80::/64');
  assert.equal(poolOfAddress(4, parseAddress('192.168.89.7').value, ps)?.cidr, '192.168.89.0/24');
  assert.equal(poolOfAddress(4, parseAddress('192.168.1.7').value, ps)?.cidr, '192.168.0.0/16');
  assert.equal(poolOfAddress(4, parseAddress('10.1.1.1').value, ps), undefined);
  assert.deepEqual(cidrs(nestedPools(parseCidr('192.168.0.0/16'), ps)), ['192.168.89.0/24']);
  assert.deepEqual(nestedPools(parseCidr('192.168.89.0/24'), ps), []);
});

test('nesting of a new pool with existing ones, and the one line pool add prints', () => {
  const ps = ['192.168.0.0/16', '10.0.0.0/8', '10.20.0.0/16', '10.20.30.0/24'].map(pool);
  assert.deepEqual(poolNesting(parseCidr('192.168.89.0/24'), ps), { inside: ['192.168.0.0/16'], contains: [] });
  assert.deepEqual(poolNesting(parseCidr('10.20.0.0/20'), ps), { inside: ['10.20.0.0/16', '10.0.0.0/8'], contains: [] });
  assert.deepEqual(poolNesting(parseCidr('10.20.0.0/18'), ps), { inside: ['10.20.0.0/16', '10.0.0.0/8'], contains: ['10.20.30.0/24'] });
  assert.deepEqual(poolNesting(parseCidr('10.20.0.0/17'), ps), { inside: ['10.20.0.0/16', '10.0.0.0/8'], contains: ['10.20.30.0/24'] });
  assert.deepEqual(poolNesting(parseCidr('0.0.0.0/0'), ps), { inside: [], contains: ['10.20.30.0/24', '10.20.0.0/16', '10.0.0.0/8', '192.168.0.0/16'] });
  assert.deepEqual(poolNesting(parseCidr('10.0.0.0/8'), ps), { inside: [], contains: ['10.20.30.0/24', '10.20.0.0/16'] }, 'itself is not nesting');
  assert.equal(
    nestingNote(parseCidr('192.168.89.0/24'), ps),
    'Pool 192.168.89.0/24 lies inside existing pool 192.168.0.0/16: automatic addresses come from the narrower pool first',
  );
  assert.equal(
    nestingNote(parseCidr('10.20.0.0/17'), ps),
    'Pool 10.20.0.0/17 lies inside existing pool 10.20.0.0/16 and contains existing pool 10.20.30.0/24: automatic addresses come from the narrower pool first',
  );
  assert.equal(
    nestingNote(parseCidr('172.0.0.0/6'), ['172.16.0.0/12', '173.0.0.0/16'].map(pool)),
    'Pool 172.0.0.0/6 contains existing pools 172.16.0.0/12, 173.0.0.0/16: automatic addresses come from the narrower pool first',
  );
  assert.equal(nestingNote(parseCidr('172.16.0.0/12'), ps), undefined);
});

test('claim candidates of a wide pool step over a nested pool whole', () => {
  const wide = parseCidr('192.168.0.0/22'); // 16 blocks
  const narrow = parseCidr('192.168.1.0/24'); // 4 of them
  for (const host of ['a', 'b', 'c', 'd', 'e']) {
    const all = [...candidateBlocks(wide, host, 100, [narrow])].map((c) => c.text);
    assert.equal(all.length, 12, host);
    assert.equal(new Set(all).size, 12, 'no block twice');
    for (const t of all) assert.ok(!cidrWithin(parseCidr(t), narrow), `${t} lies in the nested pool`);
  }
  // A nested IPv6 pool of 2^42 blocks costs one step, not 2^42.
  const big = [...candidateBlocks(parseCidr('fd00::/64'), 'h', 5, [parseCidr('fd00::/80'), parseCidr('fd00:0:0:0:8000::/65')])];
  assert.equal(big.length, 5);
  for (const c of big) {
    assert.ok(!cidrWithin(c, parseCidr('fd00::/80')) && !cidrWithin(c, parseCidr('fd00:0:0:0:8000::/65')), c.text);
  }
  // Exclusions outside the pool change nothing.
  assert.deepEqual(
    [...candidateBlocks(wide, 'a', 100, [parseCidr('10.0.0.0/8')])].map((c) => c.text),
    [...candidateBlocks(wide, 'a', 100)].map((c) => c.text),
  );
});

test('removing a pool takes only the blocks no remaining pool contains', () => {
  const wide = parseCidr('192.168.0.0/16');
  const remaining = ['192.168.89.0/24'].map(pool);
  assert.ok(removedWith(wide, parseCidr('192.168.0.0/26'), remaining));
  assert.ok(!removedWith(wide, parseCidr('192.168.89.64/26'), remaining), 'the nested pool keeps its block');
  assert.ok(!removedWith(wide, parseCidr('10.0.0.0/26'), remaining), 'not in the removed pool');
  // Removing the nested pool while the wide one stays: its blocks pass to the wide pool.
  assert.ok(!removedWith(parseCidr('192.168.89.0/24'), parseCidr('192.168.89.64/26'), ['192.168.0.0/16'].map(pool)));
  assert.ok(removedWith(parseCidr('192.168.89.0/24'), parseCidr('192.168.89.64/26'), []));
});
