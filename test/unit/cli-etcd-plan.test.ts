import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planEtcd, needsProbe, EtcdFacts } from '../../src/etcd/discovery';
import { resolveEndpoints } from '../../src/etcd/endpoints';
import { embeddedClientUrl } from '../../src/etcd/embedded';

const none = { kind: 'none' } as const;
const etcd = { kind: 'etcd', version: '3.4.23' } as const;
const SOCK = embeddedClientUrl('/var/lib/calico');
const facts = (f: Partial<EtcdFacts> = {}): EtcdFacts => ({ embeddedUrl: SOCK, embeddedData: false, ...f });

test('etcd plan: the embedded member listens on a unix socket in the state dir', () => {
  assert.equal(SOCK, 'unix:///var/lib/calico/etcd.sock:2379');
});

test('etcd plan: nothing configured and nothing on 127.0.0.1:2379 -> embedded member on its socket', () => {
  const r = resolveEndpoints(undefined, {});
  assert.equal(needsProbe(r, 'auto', false), true);
  const p = planEtcd(r, 'auto', facts({ probe: none }));
  assert.deepEqual(p, { action: 'embed', reason: `no etcd answers at http://127.0.0.1:2379: starting the embedded etcd member on ${SOCK}` });
});

test('etcd plan: a state dir that holds the member\'s data embeds again without asking 127.0.0.1:2379 (a squatter there is never used)', () => {
  const r = resolveEndpoints(undefined, {});
  assert.equal(needsProbe(r, 'auto', true), false);
  assert.equal(planEtcd(r, 'auto', facts({ embeddedData: true, probe: etcd })).action, 'embed');
});

test('etcd plan: an etcd already answering on the default endpoint is used, not replaced', () => {
  const p = planEtcd(resolveEndpoints(undefined, {}), 'auto', facts({ probe: etcd }));
  assert.equal(p.action, 'use');
  assert.deepEqual(p.action === 'use' && p.endpoints, ['http://127.0.0.1:2379']);
  assert.match(p.reason, /using etcd at http:\/\/127.0.0.1:2379 \(etcd 3.4.23\)/);
});

test('etcd plan: a configured endpoint is never replaced by a local member; --embedded-etcd with another endpoint is refused', () => {
  const r = resolveEndpoints(undefined, { ETCD_ENDPOINTS: 'http://127.0.0.1:23999' });
  assert.equal(needsProbe(r, 'auto', false), false);
  assert.deepEqual(planEtcd(r, 'auto', facts()), { action: 'use', endpoints: ['http://127.0.0.1:23999'], reason: 'using etcd at http://127.0.0.1:23999 (from ETCD_ENDPOINTS)' });
  const on = planEtcd(r, 'on', facts());
  assert.equal(on.action, 'refuse');
  assert.match(on.reason, /--embedded-etcd runs this host's own member on unix:\/\/\/var\/lib\/calico\/etcd.sock:2379; it cannot also use http:\/\/127.0.0.1:23999/);
  assert.equal(planEtcd(resolveEndpoints(undefined, {}), 'off', facts()).action, 'use');
  assert.equal(planEtcd(resolveEndpoints(undefined, {}), 'on', facts()).action, 'embed');
});

test('etcd plan: the member\'s own socket, configured, embeds (auto and on)', () => {
  const r = resolveEndpoints(SOCK, {});
  assert.equal(planEtcd(r, 'auto', facts()).action, 'embed');
  assert.equal(planEtcd(r, 'on', facts()).action, 'embed');
  assert.equal(planEtcd(r, 'off', facts()).action, 'use');
});

test('etcd plan: 127.0.0.1:2379 held by something that is not etcd is refused, naming it', () => {
  const busy = planEtcd(resolveEndpoints(undefined, {}), 'auto', facts({ probe: { kind: 'other', detail: 'HTTP 404' } }));
  assert.equal(busy.action, 'refuse');
  assert.match(busy.reason, /something else listens there \(HTTP 404\)/);
});
