import { test } from 'node:test';
import assert from 'node:assert/strict';
import { affinitySighting, orphanBlockSighting, planSweep, SweepInput } from '../../src/reconciler/sweep-plan';
import { ContainerView, endpointFromContainer } from '../../src/endpoints/container-view';
import type { Endpoint } from '../../src/endpoints/model';
import { parseEventLine } from '../../src/reconciler/docker-events';
import type { Allocation, OrphanBlock, StaleAffinity } from '../../src/ipam/types';

const HOST = 'h1';

function alloc(handle: string, address: string, attrs: Record<string, string> = {}): Allocation {
  return { address, family: 4, handle, host: HOST, pool: '10.0.0.0/16', block: '10.0.0.0/26', attrs };
}

function container(id: string, opts: { handle?: string; running?: boolean; ep?: string; ip?: string; profiles?: string } = {}): ContainerView {
  const labels: Record<string, string> = {};
  if (opts.handle) labels['org.projectcalico.handle'] = opts.handle;
  if (opts.profiles) labels['org.projectcalico.profiles'] = opts.profiles;
  return {
    Id: id,
    Labels: labels,
    State: opts.running ? 'running' : 'exited',
    NetworkSettings: {
      Networks: opts.ep ? { calico: { EndpointID: opts.ep, IPAddress: opts.ip ?? '10.0.0.1', MacAddress: '02:42:0a:00:00:01' } } : {},
    },
  };
}

function input(over: Partial<SweepInput>): SweepInput {
  return {
    host: HOST,
    now: 1_000_000,
    graceMs: 60_000,
    allocations: [],
    endpoints: [],
    containers: [],
    inflight: () => false,
    sightings: new Map(),
    ...over,
  };
}

test('an allocation whose container exists is never released, running or not', () => {
  const p = planSweep(
    input({
      allocations: [alloc('resv-a', '10.0.0.1', { container: 'c1' }), alloc('resv-b', '10.0.0.2', { container: 'c2' })],
      containers: [container('c1', { handle: 'resv-a', running: true, ep: 'e1' }), container('c2', { handle: 'resv-b' })],
    }),
  );
  assert.deepEqual(p.release, []);
  assert.deepEqual(p.adopt, []);
});

test('an allocation naming a container that is gone is released at once', () => {
  const p = planSweep(input({ allocations: [alloc('resv-a', '10.0.0.1', { container: 'gone' }), alloc('other', '10.0.0.9', { container: 'gone2' })] }));
  assert.deepEqual(p.release.map((r) => r.handle).sort(), ['other', 'resv-a']);
});

test('a container carrying the handle label adopts a reservation that does not name it (node killed before setAttrs)', () => {
  const p = planSweep(input({ allocations: [alloc('resv-a', '10.0.0.1')], containers: [container('c9', { handle: 'resv-a' })] }));
  assert.deepEqual(p.adopt, [{ handle: 'resv-a', container: 'c9' }]);
  assert.deepEqual(p.release, []);
  assert.equal(p.sightings.size, 0);
});

test('a reservation without any container: first sighting, kept within grace, released after two sightings a grace apart', () => {
  const allocations = [alloc('resv-x', '10.0.0.3')];
  const first = planSweep(input({ allocations }));
  assert.deepEqual(first.release, []);
  assert.equal(first.sightings.get('resv-x'), 1_000_000);
  const early = planSweep(input({ allocations, now: 1_000_000 + 59_999, sightings: first.sightings }));
  assert.deepEqual(early.release, []);
  assert.equal(early.sightings.get('resv-x'), 1_000_000);
  const late = planSweep(input({ allocations, now: 1_000_000 + 60_000, sightings: early.sightings }));
  assert.deepEqual(late.release.map((r) => r.handle), ['resv-x']);
  assert.equal(late.sightings.size, 0);
});

test('in-flight creates and foreign handles without an owner are never collected; a docker- handle is, once no container holds its address', () => {
  // This test used to assert that docker- handles are never collected: the
  // leak of a Docker release missed while the node was down.
  const allocations = [alloc('resv-busy', '10.0.0.4'), alloc('docker-ep-1', '10.0.0.5'), alloc('other-1', '10.0.0.6'), alloc('docker-live', '10.0.0.7')];
  const sightings = new Map([['resv-busy', 0], ['docker-ep-1', 0], ['other-1', 0], ['docker-live', 0]]);
  const containers = [container('c7', { running: true, ep: 'e7', ip: '10.0.0.7' })];
  const p = planSweep(input({ allocations, sightings, containers, inflight: (h) => h === 'resv-busy' }));
  assert.deepEqual(p.release.map((r) => r.handle), ['docker-ep-1']);
  assert.match(p.release[0]!.reason, /^Docker-driver address 10\.0\.0\.5 held by no container for 1000 s$/);
  assert.equal(p.sightings.size, 0);
});

test('a docker- handle without a container holding its address: first sighting, kept within grace, released after two sightings a grace apart', () => {
  const allocations = [alloc('docker-x', '10.0.0.3')];
  const first = planSweep(input({ allocations }));
  assert.deepEqual(first.release, []);
  assert.equal(first.sightings.get('docker-x'), 1_000_000);
  const early = planSweep(input({ allocations, now: 1_000_000 + 59_999, sightings: first.sightings }));
  assert.deepEqual(early.release, []);
  assert.equal(early.sightings.get('docker-x'), 1_000_000);
  const late = planSweep(input({ allocations, now: 1_000_000 + 60_000, sightings: early.sightings }));
  assert.deepEqual(late.release.map((r) => r.handle), ['docker-x']);
  assert.equal(late.sightings.size, 0);
});

test('a docker- address held by any container in dockerd\'s listing, on any network, in any spelling, is never collected', () => {
  const v6: ContainerView = {
    Id: 'c6',
    Labels: {},
    State: 'running',
    NetworkSettings: { Networks: { 'my-calico': { EndpointID: 'e6', IPAddress: '', GlobalIPv6Address: 'fd00:0:0::0007', MacAddress: 'm' } } },
  };
  // Shown with its address while not running (a listing racing a stop): still held.
  const stopping: ContainerView = { Id: 'c8', Labels: {}, State: 'exited', NetworkSettings: { Networks: { calico: { EndpointID: 'e8', IPAddress: '10.0.0.8' } } } };
  const allocations: Allocation[] = [{ ...alloc('docker-v6', 'fd00::7'), family: 6 }, alloc('docker-stopping', '10.0.0.8'), alloc('docker-gone', '10.0.0.9')];
  const sightings = new Map([['docker-v6', 0], ['docker-stopping', 0], ['docker-gone', 0]]);
  const p = planSweep(input({ allocations, sightings, containers: [v6, stopping, container('c1', { running: true })] }));
  assert.deepEqual(p.release.map((r) => r.handle), ['docker-gone']);
  assert.equal(p.sightings.size, 0, 'held handles forget their sighting');
  // A dual-stack container holding one address of a handle keeps the whole handle.
  const both = [alloc('docker-ds', '10.0.0.20'), { ...alloc('docker-ds', 'fd00::20'), family: 6 as const }];
  const q = planSweep(input({ allocations: both, sightings: new Map([['docker-ds', 0]]), containers: [container('c20', { running: true, ep: 'e', ip: '10.0.0.20' })] }));
  assert.deepEqual(q.release, []);
});

const stale = (over: Partial<StaleAffinity> = {}): StaleAffinity => ({
  host: 'dead-host',
  family: 4,
  block: '10.0.0.64/26',
  state: 'pending',
  since: 5,
  revision: '42',
  reason: 'pending',
  ...over,
});

test('stale block claims (any host): settled after two sightings a grace apart at the same revision', () => {
  const a = stale();
  const b = stale({ host: HOST, block: '10.0.0.128/26', state: 'confirmed', reason: 'block missing', revision: '50' });
  const first = planSweep(input({ staleAffinities: [a, b] }));
  assert.deepEqual(first.settleAffinities, []);
  assert.deepEqual([...first.sightings.keys()].sort(), [affinitySighting(a), affinitySighting(b)].sort());
  const early = planSweep(input({ staleAffinities: [a, b], now: 1_000_000 + 59_999, sightings: first.sightings }));
  assert.deepEqual(early.settleAffinities, []);
  const late = planSweep(input({ staleAffinities: [a, b], now: 1_000_000 + 60_000, sightings: early.sightings }));
  assert.deepEqual(late.settleAffinities.map((s) => s.affinity), [a, b]);
  assert.equal(late.settleAffinities[0]!.reason, 'block claim 10.0.0.64/26 of dead-host (pending) unchanged for 60 s');
  assert.equal(late.sightings.size, 0);
  // Rewritten meanwhile (a live claim moved on): a new revision starts again; a settled one is forgotten.
  const moved = planSweep(input({ staleAffinities: [{ ...a, revision: '43' }], now: 1_000_000 + 60_000, sightings: early.sightings }));
  assert.deepEqual(moved.settleAffinities, []);
  assert.deepEqual([...moved.sightings.keys()], [affinitySighting({ ...a, revision: '43' })]);
  // The IPAM lists none (or cannot): nothing to settle.
  assert.deepEqual(planSweep(input({ sightings: early.sightings, now: 2_000_000 })).settleAffinities, []);
});

test('blocks outside every pool: an empty one is removed after two sightings a grace apart at the same revision; one holding addresses is kept and reported', () => {
  const empty: OrphanBlock = { family: 4, block: '10.9.0.0/26', host: 'h2', allocations: 0, revision: '70' };
  const used: OrphanBlock = { family: 4, block: '10.9.0.64/26', allocations: 2, revision: '71' };
  const first = planSweep(input({ orphanBlocks: [empty, used] }));
  assert.deepEqual(first.removeOrphanBlocks, []);
  assert.deepEqual(first.keptOrphanBlocks.map((k) => k.block), [used], 'reported when first seen');
  assert.match(first.keptOrphanBlocks[0]!.reason, /^block 10\.9\.0\.64\/26 lies in no pool but holds 2 addresses: left as it is/);
  const early = planSweep(input({ orphanBlocks: [empty, used], now: 1_000_000 + 59_999, sightings: first.sightings }));
  assert.deepEqual(early.removeOrphanBlocks, []);
  assert.deepEqual(early.keptOrphanBlocks, [], 'not reported again within the grace');
  const late = planSweep(input({ orphanBlocks: [empty, used], now: 1_000_000 + 60_000, sightings: early.sightings }));
  assert.deepEqual(late.removeOrphanBlocks.map((r) => r.block), [empty], 'the empty one goes; the used one never');
  assert.equal(late.removeOrphanBlocks[0]!.reason, 'block 10.9.0.0/26 of h2 lies in no pool and holds no address, unchanged for 60 s');
  // Written meanwhile (an allocation, a pool added around it): a new revision starts over.
  const moved = planSweep(input({ orphanBlocks: [{ ...empty, revision: '72' }], now: 1_000_000 + 60_000, sightings: early.sightings }));
  assert.deepEqual(moved.removeOrphanBlocks, []);
  assert.deepEqual([...moved.sightings.keys()], [orphanBlockSighting({ ...empty, revision: '72' })]);
});

test('affinity sightings never clash with handles', () => {
  const a = stale();
  assert.match(affinitySighting(a), / /, 'a space: not a valid handle character');
  assert.equal(affinitySighting(a), 'affinity dead-host/4/10.0.0.64/26@42');
});

test('a sighting is forgotten once its handle is gone or owned', () => {
  const p = planSweep(input({ allocations: [], sightings: new Map([['resv-old', 5]]) }));
  assert.equal(p.sightings.size, 0);
});

test('endpoints: removed when the container is gone, recorded when a running container lacks one, deactivated when stopped', () => {
  const running = container('c1', { handle: 'resv-a', running: true, ep: 'aaaaaaaaaaaaaaaabbbb', ip: '10.0.0.1', profiles: 'web,db' });
  const want = endpointFromContainer(running, HOST)!;
  assert.deepEqual(want, {
    host: HOST,
    containerId: 'c1',
    endpointId: 'aaaaaaaaaaaaaaaabbbb',
    name: 'caliaaaaaaaaaaa',
    mac: '02:42:0a:00:00:01',
    'container:if_name': 'eth0',
    ipv4_nets: ['10.0.0.1/32'],
    ipv6_nets: [],
    ipv4_gateway: '169.254.1.1',
    ipv6_gateway: null,
    profile_ids: ['web', 'db'],
    state: 'active',
  });
  const stale: Endpoint = { ...want, containerId: 'gone', endpointId: 'zz' };
  const stoppedRec: Endpoint = { ...want, containerId: 'c2', endpointId: 'yy' };
  const p = planSweep(
    input({ endpoints: [stale, stoppedRec], containers: [running, container('c2', { handle: 'resv-b' })] }),
  );
  assert.deepEqual(p.removeEndpoints, [stale]);
  assert.deepEqual(p.record, [want, { ...stoppedRec, state: 'inactive' }]);
  // Already recorded as is: nothing to write.
  const q = planSweep(input({ endpoints: [want], containers: [running] }));
  assert.deepEqual(q.record, []);
  // A restart gives a new endpoint id: recorded again.
  const moved = container('c1', { handle: 'resv-a', running: true, ep: 'cccccccccccccccc', profiles: 'web,db' });
  const r = planSweep(input({ endpoints: [want], containers: [moved] }));
  assert.equal(r.record[0].endpointId, 'cccccccccccccccc');
  assert.deepEqual(r.removeEndpoints, [want], 'the previous start\'s record goes');
  // Taken off the calico network by hand while running: its record goes.
  const off = container('c1', { running: true });
  assert.deepEqual(planSweep(input({ endpoints: [want], containers: [off] })).removeEndpoints, [want]);
  // Profiles are the datastore's once recorded (`profile P member add`): not rewritten from labels.
  const moved2 = { ...want, profile_ids: ['PROF_GROUP1'] };
  assert.deepEqual(planSweep(input({ endpoints: [moved2], containers: [running] })).record, []);
});

test('parseEventLine: container events from current and legacy dockerd, others ignored', () => {
  assert.deepEqual(
    parseEventLine('{"status":"destroy","id":"abc","Type":"container","Action":"destroy","Actor":{"ID":"abc","Attributes":{"org.projectcalico.handle":"resv-1","name":"x"}},"time":1}'),
    { action: 'destroy', id: 'abc', attributes: { 'org.projectcalico.handle': 'resv-1', name: 'x' } },
  );
  assert.deepEqual(parseEventLine('{"status":"start","id":"abc"}'), { action: 'start', id: 'abc', attributes: {} });
  assert.equal(parseEventLine('{"Type":"network","Action":"connect","Actor":{"ID":"n"}}'), undefined);
  assert.equal(parseEventLine('garbage'), undefined);
  assert.equal(parseEventLine(''), undefined);
  assert.equal(parseEventLine('{"Type":"container","Action":"exec_start: sh","Actor":{"ID":"c"}}')?.action, 'exec_start');
});

test('a container being started (listed as created, its Join already recorded it) keeps its record active', () => {
  const starting: ContainerView = { ...container('c3', { handle: 'resv-c' }), State: 'created' };
  const rec: Endpoint = {
    host: HOST, containerId: 'c3', endpointId: 'xx', name: 'calixx', mac: '02:42:0a:00:00:03', 'container:if_name': 'eth0',
    ipv4_nets: ['10.0.0.3/32'], ipv6_nets: [], profile_ids: ['G'], state: 'active',
  };
  const p = planSweep(input({ endpoints: [rec], containers: [starting] }));
  assert.deepEqual(p.record, []);
  assert.deepEqual(p.removeEndpoints, []);
});
