// A create body nested deeper than the interceptor reads is refused before
// anything is reserved (found by the edge fuzz: 500 and a leaked reservation
// from a stack overflow), never passed on unread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_CREATE_DEPTH, RequestRefused } from '../../src/proxy/interceptors/calico-request';
import { readCreateBody, rewriteCreate } from '../../src/proxy/interceptors/create-body';

test('readCreateBody: a body nested past MAX_CREATE_DEPTH is refused 400; one at the limit is rewritten', () => {
  const nested = (d: number) => `{"Env":["CALICO_IP=auto"],"X":${'['.repeat(d)}1${']'.repeat(d)}}`;
  for (const d of [MAX_CREATE_DEPTH, 20000, 1_000_000]) {
    assert.throws(() => readCreateBody(Buffer.from(nested(d))), (e: unknown) => e instanceof RequestRefused && e.status === 400 && /nested more than 1000 levels deep/.test(e.message));
  }
  const ok = readCreateBody(Buffer.from(nested(MAX_CREATE_DEPTH - 1)));
  assert.ok(ok);
  const out = rewriteCreate(ok, { handle: 'h', ipv4: '10.0.0.1', profiles: [] });
  assert.ok(out.length > 2 * MAX_CREATE_DEPTH);
  assert.deepEqual(JSON.parse(out.toString()).Env, ['CALICO_IP=auto']);
});
