import { test } from 'node:test';
import assert from 'node:assert/strict';
import { claimHeldAddress, ListedContainer } from '../../src/plugin/address-claim';
import { addressTakenMessage, recordedOwner } from '../../src/ipam/owner';
import { keptProfiles } from '../../src/datastore/endpoint-store';
import { HANDLE_LABEL, calicoNetworkName } from '../../src/names';
import type { Allocation } from '../../src/ipam/types';

// Who may take an explicit address that IPAM holds for a container of this
// host: only its recorded owner; a label names a handle, never proves it.

const A = 'a'.repeat(64);
const N = 'b'.repeat(64);
const X = '10.0.0.5';
const owner = (attrs: Record<string, string> = { container: A }): Allocation => ({
  address: X, family: 4, handle: 'resv-1', host: 'h1', pool: '10.0.0.0/16', block: '10.0.0.0/26', attrs,
});
const c = (id: string, name: string, state: string, ip?: string, labels: Record<string, string> = {}): ListedContainer => ({
  Id: id, Names: [`/${name}`], State: state, Labels: labels,
  NetworkSettings: { Networks: ip ? { [calicoNetworkName()]: { IPAMConfig: { IPv4Address: ip } } } : {} },
});

test('the recorded owner starting takes its address; a running owner or another host refuses, naming the owner', () => {
  assert.deepEqual(claimHeldAddress(X, owner(), 'h1', [c(A, 'group1-node1', 'exited', X)]), { kind: 'accept' });
  const running = claimHeldAddress(X, owner(), 'h1', [c(A, 'group1-node1', 'running', X)]);
  assert.deepEqual(running, { kind: 'refuse', message: `address ${X} belongs to container group1-node1 (aaaaaaaaaaaa); remove it first` });
  assert.equal(
    addressTakenMessage(X, { ...owner(), host: 'h2' }, 'h1'),
    `address ${X} belongs to container aaaaaaaaaaaa on host h2; remove it first`,
  );
});

test('another container asking for the address too: probed (the one being started does not answer inspect)', () => {
  const r = claimHeldAddress(X, owner(), 'h1', [c(A, 'group1-node1', 'exited', X), c(N, 'thief', 'created', X), c('c'.repeat(64), 'other', 'exited', '10.0.0.6')]);
  assert.equal(r.kind, 'probe');
  assert.deepEqual(r.kind === 'probe' && r.others, [N]);
  assert.match(r.kind === 'probe' ? r.message : '', /belongs to container group1-node1 \(aaaaaaaaaaaa\); remove it first/);
});

test('the recorded owner gone: its handle may go; no owner recorded yet: one container with the (fresh) label is adopted, else refused', () => {
  assert.deepEqual(claimHeldAddress(X, owner(), 'h1', [c(N, 'thief', 'created', X)]), { kind: 'owner-gone', owner: A });
  const fresh = owner({ name: 'web' });
  assert.deepEqual(claimHeldAddress(X, fresh, 'h1', [c(A, 'web', 'created', X, { [HANDLE_LABEL]: 'resv-1' })]), { kind: 'accept', adopt: A });
  const two = claimHeldAddress(X, fresh, 'h1', [c(A, 'web', 'created', X, { [HANDLE_LABEL]: 'resv-1' }), c(N, 'copy', 'created', X, { [HANDLE_LABEL]: 'resv-1' })]);
  assert.deepEqual(two, { kind: 'refuse', message: `address ${X} is reserved for container web being created (handle resv-1); remove it first` });
  assert.equal(claimHeldAddress(X, fresh, 'h1', [c(N, 'thief', 'created', X)]).kind, 'refuse', 'no label, no owner');
});

test('recordedOwner and keptProfiles', () => {
  assert.equal(recordedOwner([{ attrs: {} }, { attrs: { container: A } }]), A);
  assert.equal(recordedOwner([{ attrs: {} }]), undefined);
  const rec = (key: string, rev: string, p: string[]) => ({ key, modRevision: rev, value: { profile_ids: p } as never });
  assert.deepEqual(keptProfiles('k2', [rec('k1', '9', ['a']), rec('k2', '3', ['b'])]), ['b'], 'the same record first');
  assert.deepEqual(keptProfiles('k3', [rec('k1', '9', ['a']), rec('k2', '30', ['b'])]), ['b'], 'else the newest');
  assert.equal(keptProfiles('k1', []), undefined);
});

test('a running owner not yet on the calico network is being connected (`calicoctl container add`): it takes its address, unless a container being started asks for it too', () => {
  const offCalico = (id: string, name: string): ListedContainer => ({ Id: id, Names: [`/${name}`], State: 'running', Labels: {}, NetworkSettings: { Networks: { bridge: {} } } });
  assert.deepEqual(claimHeldAddress(X, owner(), 'h1', [offCalico(A, 'noproxy')]), { kind: 'accept' });
  const r = claimHeldAddress(X, owner(), 'h1', [offCalico(A, 'noproxy'), c(N, 'thief', 'created', X)]);
  assert.equal(r.kind, 'probe');
  assert.deepEqual(r.kind === 'probe' && r.others, [N]);
});
