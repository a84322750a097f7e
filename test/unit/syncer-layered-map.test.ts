import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LayeredMap } from '../../src/syncer/layered-map';

/** A small deterministic PRNG (tests must not depend on Math.random). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function same<V>(m: LayeredMap<string, V>, model: Map<string, V>, what: string): void {
  assert.equal(m.size, model.size, `${what}: size`);
  assert.deepEqual(new Map(m), model, `${what}: entries`);
  assert.equal([...m.keys()].length, model.size, `${what}: keys`);
  assert.deepEqual([...m.values()].sort(), [...model.values()].sort(), `${what}: values`);
  for (const [k, v] of model) {
    assert.equal(m.get(k), v, `${what}: get ${k}`);
    assert.ok(m.has(k), `${what}: has ${k}`);
  }
  assert.equal(m.has('never'), false);
  assert.equal(m.get('never'), undefined);
}

test('layered map: every version reads as the plain map it models, and old versions never change', () => {
  const next = rng(16);
  let m = LayeredMap.empty<string, number>();
  let model = new Map<string, number>();
  const kept: [LayeredMap<string, number>, Map<string, number>][] = [];
  for (let batch = 0; batch < 400; batch++) {
    const d = m.edit();
    // Mostly small batches, now and then a large one (a resync-sized write).
    const n = batch % 50 === 0 ? 300 : 1 + Math.floor(next() * 5);
    model = new Map(model);
    for (let i = 0; i < n; i++) {
      const k = `k${Math.floor(next() * 500)}`;
      if (next() < 0.3) assert.equal(d.delete(k), model.delete(k), `delete ${k}`);
      else {
        const v = Math.floor(next() * 1e6);
        d.set(k, v);
        model.set(k, v);
      }
    }
    m = d.done();
    same(m, model, `batch ${batch}`);
    if (batch % 37 === 0) kept.push([m, model]);
  }
  for (const [i, [old, oldModel]] of kept.entries()) same(old, oldModel, `kept version ${i}`);
  // The change layer is bounded: flattened once it outgrows its share of the base.
  assert.ok(m.layerSize() <= Math.max(64, m.size / 8), `layer ${m.layerSize()} of ${m.size}`);
});

test('layered map: a changed key keeps its place; a new key comes last; a spent draft refuses writes', () => {
  const d0 = LayeredMap.empty<string, string>().edit();
  for (const k of ['a', 'b', 'c']) d0.set(k, k);
  const m0 = d0.done();
  const d1 = m0.edit();
  d1.set('b', 'B');
  d1.set('d', 'd');
  d1.delete('a');
  assert.equal(d1.delete('zz'), false);
  const m1 = d1.done();
  assert.deepEqual([...m1], [['b', 'B'], ['c', 'c'], ['d', 'd']]);
  assert.deepEqual([...m0], [['a', 'a'], ['b', 'b'], ['c', 'c']]);
  const seen: string[] = [];
  m1.forEach((v, k, map) => {
    assert.equal(map, m1);
    seen.push(`${k}=${v}`);
  });
  assert.deepEqual(seen, ['b=B', 'c=c', 'd=d']);
  assert.throws(() => d1.set('e', 'e'), /after done/);
});
