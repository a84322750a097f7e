// A create body nested deeper than the interceptor can walk or write back is
// refused before anything is reserved (found by the edge fuzz: 500 and a leaked
// reservation from V8's JSON.stringify stack overflow).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_CREATE_DEPTH, RequestRefused, jsonNestedDeeperThan, parseCreateBody, rewriteCreateBody } from '../../src/proxy/interceptors/calico-request';

test('jsonNestedDeeperThan: counts arrays and objects, skips brackets inside strings and escapes', () => {
  assert.equal(jsonNestedDeeperThan('{"a":[1,{"b":2}]}', 3), false);
  assert.equal(jsonNestedDeeperThan('{"a":[1,{"b":[2]}]}', 3), true);
  assert.equal(jsonNestedDeeperThan('{"a":"[[[[[[{{{{"}', 1), false);
  assert.equal(jsonNestedDeeperThan('{"a":"\\"[[[[","b":1}', 1), false);
  assert.equal(jsonNestedDeeperThan('[]'.repeat(5000), 1), false);
});

test('parseCreateBody: a body nested past MAX_CREATE_DEPTH is refused 400; one at the limit is rewritten', () => {
  const nested = (d: number) => `{"Env":["CALICO_IP=auto"],"X":${'['.repeat(d)}1${']'.repeat(d)}}`;
  for (const d of [MAX_CREATE_DEPTH, 20000, 1_000_000]) {
    assert.throws(() => parseCreateBody(Buffer.from(nested(d))), (e: unknown) => e instanceof RequestRefused && e.status === 400 && /nested more than 1000 levels deep/.test(e.message));
  }
  const ok = parseCreateBody(Buffer.from(nested(MAX_CREATE_DEPTH - 1)));
  assert.ok(ok);
  const out = JSON.stringify(rewriteCreateBody(ok, { handle: 'h', ipv4: '10.0.0.1', profiles: [] }));
  assert.ok(out.length > 2 * MAX_CREATE_DEPTH);
});
