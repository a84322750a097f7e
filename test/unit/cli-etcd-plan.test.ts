import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planEtcd } from '../../src/etcd/discovery';
import { resolveEndpoints } from '../../src/etcd/endpoints';

const none = { kind: 'none' } as const;
const etcd = { kind: 'etcd', version: '3.4.23' } as const;

test('etcd plan: nothing configured and nothing on 127.0.0.1:2379 -> embedded member there', () => {
  const p = planEtcd(resolveEndpoints(undefined, {}), 'auto', none);
  assert.deepEqual(p, { action: 'embed', clientUrl: 'http://127.0.0.1:2379', reason: 'no etcd answers at http://127.0.0.1:2379: starting an embedded etcd member' });
});

test('etcd plan: an etcd already answering on the default endpoint is used, not replaced', () => {
  const p = planEtcd(resolveEndpoints(undefined, {}), 'auto', etcd);
  assert.equal(p.action, 'use');
  assert.match(p.reason, /using etcd at http:\/\/127.0.0.1:2379 \(etcd 3.4.23\)/);
});

test('etcd plan: a configured endpoint is never replaced by a local member unless asked', () => {
  const r = resolveEndpoints(undefined, { ETCD_ENDPOINTS: 'http://127.0.0.1:23999' });
  assert.equal(planEtcd(r, 'auto', none).action, 'use');
  assert.deepEqual(planEtcd(r, 'on', none), { action: 'embed', clientUrl: 'http://127.0.0.1:23999', reason: 'no etcd answers at http://127.0.0.1:23999: starting an embedded etcd member' });
  assert.equal(planEtcd(resolveEndpoints(undefined, {}), 'off', none).action, 'use');
});

test('etcd plan: --embedded-etcd on a remote or multi-member list, or a port held by something else, is refused', () => {
  const remote = planEtcd(resolveEndpoints('http://10.0.0.1:2379', {}), 'on', none);
  assert.deepEqual(remote, { action: 'refuse', reason: '--embedded-etcd needs one loopback http endpoint to listen on; got http://10.0.0.1:2379' });
  assert.equal(planEtcd(resolveEndpoints('127.0.0.1:1,127.0.0.1:2', {}), 'on', none).action, 'refuse');
  const busy = planEtcd(resolveEndpoints(undefined, {}), 'auto', { kind: 'other', detail: 'HTTP 404' });
  assert.equal(busy.action, 'refuse');
  assert.match(busy.reason, /something else listens there \(HTTP 404\)/);
});
