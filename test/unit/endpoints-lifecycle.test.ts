import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { keptProfiles, type Endpoint, type EndpointStore } from '../../src/datastore/endpoint-store';
import { EndpointLifecycle } from '../../src/endpoints/lifecycle';
import { makeEndpoint } from '../../src/endpoints/model';
import { EndpointRegistry } from '../../src/endpoints/registry';
import { ReservationBook } from '../../src/endpoints/reservations';
import type { Allocation, Ipam } from '../../src/ipam/types';

// The Join path's shortcut: a container the proxy created has its reserved
// address noted in the reservation book, so the endpoint holding that
// address is named (container, profiles) without asking dockerd; after a
// node restart the reservation's attributes in IPAM name it instead.

/**
 * A store that keeps what it is given as EndpointStore does (one record per
 * container, profiles of an existing record kept), the lifecycle's writes
 * being the facts under test; EndpointStore itself is tested on etcd.
 */
function memoryStore(): EndpointStore & { rows: Map<string, Endpoint> } {
  const rows = new Map<string, Endpoint>();
  const key = (e: { containerId: string; endpointId: string }) => `${e.containerId}/${e.endpointId}`;
  return {
    rows,
    record: async (ep: Endpoint) => {
      const found = [...rows.entries()].filter(([k]) => k.startsWith(`${ep.containerId}/`));
      const kept = keptProfiles(key(ep), found.map(([k, v], i) => ({ key: k, value: v, modRevision: String(i + 1) })));
      for (const [k] of found) rows.delete(k);
      const written = { ...ep, profile_ids: kept ?? ep.profile_ids };
      rows.set(key(ep), written);
      return written;
    },
    deactivate: async (ep: Endpoint) => {
      const cur = rows.get(key(ep));
      if (cur) rows.set(key(ep), { ...cur, state: 'inactive' });
      return !!cur;
    },
    delete: async (ep: Endpoint) => rows.delete(key(ep)),
    deleteContainer: async (_h: string, c: string) => {
      let n = 0;
      for (const k of [...rows.keys()]) if (k.startsWith(`${c}/`)) (rows.delete(k), n++);
      return n;
    },
  } as unknown as EndpointStore & { rows: Map<string, Endpoint> };
}

function setup(lookup: (a: string) => Allocation | undefined = () => undefined) {
  const store = memoryStore();
  const registry = new EndpointRegistry();
  const book = new ReservationBook();
  const ipam = { lookup: async (a: string) => lookup(a) } as Pick<Ipam, 'lookup'>;
  const lifecycle = new EndpointLifecycle({ host: 'h1', store, registry, reservations: book, ipam, log: pino({ level: 'silent' }) });
  return { store, registry, book, lifecycle };
}

const EP = 'e'.repeat(64);
const live = () => makeEndpoint({ host: 'h1', containerId: '', endpointId: EP, mac: '02:00:00:00:00:05', ipv4: '10.0.0.5', ipv6: 'fd00::5', profiles: [] });

test('Join: the reserved address leads to its container and profiles; the record is written before Join returns', async () => {
  const { store, book, lifecycle } = setup();
  lifecycle.created(live());
  assert.equal((await lifecycle.joined(EP))?.containerId, '', 'nothing reserved: not named, not written');
  assert.equal(store.rows.size, 0);
  book.set('c1', { handle: 'resv-1', ipv4: '10.0.0.5', ipv6: 'fd00::5', profiles: ['web'] });
  const ep = await lifecycle.joined(EP);
  assert.deepEqual(ep, {
    host: 'h1',
    containerId: 'c1',
    endpointId: EP,
    state: 'active',
    name: 'calieeeeeeeeeee',
    mac: '02:00:00:00:00:05',
    'container:if_name': 'eth0',
    profile_ids: ['web'],
    ipv4_nets: ['10.0.0.5/32'],
    ipv6_nets: ['fd00::5/128'],
    ipv4_gateway: '169.254.1.1',
    ipv6_gateway: 'fe80::ecee:eeff:feee:eeee',
  });
  assert.deepEqual([...store.rows.values()], [ep]);
  await lifecycle.deleted(EP);
  assert.deepEqual([...store.rows.values()].map((e) => e.state), ['inactive'], 'DeleteEndpoint (a stop) leaves the record inactive, profiles and all');
  assert.equal(await lifecycle.record(ep!), undefined, 'a deleted endpoint is not recorded again by a late start event');
  assert.deepEqual([...store.rows.values()].map((e) => e.state), ['inactive']);
  await lifecycle.forgetContainer('c1');
  assert.equal(store.rows.size, 0, 'the container\'s removal takes the record');
});

test('Join after a node restart: the reservation in IPAM names the container and its profiles', async () => {
  const alloc: Allocation = { address: '10.0.0.5', family: 4, handle: 'resv-9', host: 'h1', pool: '10.0.0.0/16', block: '10.0.0.0/26', attrs: { container: 'c9', profiles: 'a,b' } };
  const { store, lifecycle } = setup((a) => (a === '10.0.0.5' ? alloc : undefined));
  lifecycle.created(live());
  const ep = await lifecycle.joined(EP);
  assert.equal(ep?.containerId, 'c9');
  assert.deepEqual(ep?.profile_ids, ['a', 'b']);
  assert.equal(store.rows.size, 1);
  // Another host's reservation, or a Docker-driver handle, names nobody here.
  const other = setup(() => ({ ...alloc, host: 'h2' }));
  other.lifecycle.created(live());
  assert.equal((await other.lifecycle.joined(EP))?.containerId, '');
  const drv = setup(() => ({ ...alloc, handle: 'docker-1' }));
  drv.lifecycle.created(live());
  assert.equal((await drv.lifecycle.joined(EP))?.containerId, '');
});

test('a restarted container: the new endpoint replaces the old record', async () => {
  const { store, book, lifecycle } = setup();
  book.set('c1', { handle: 'resv-1', ipv4: '10.0.0.5', profiles: [] });
  lifecycle.created(live());
  await lifecycle.joined(EP);
  const EP2 = 'f'.repeat(64);
  lifecycle.created({ ...live(), endpointId: EP2, name: 'califffffffffff' });
  await lifecycle.joined(EP2);
  assert.deepEqual([...store.rows.keys()], [`c1/${EP2}`]);
});

test('membership sticks: a restart\'s Join keeps the profiles the record holds, and the policy hook sees them', async () => {
  const { store, book, registry, lifecycle } = setup();
  const seen: string[][] = [];
  lifecycle.onRecorded(async (ep) => void seen.push(ep.profile_ids));
  book.set('c1', { handle: 'resv-1', ipv4: '10.0.0.5', profiles: ['OPEN'] });
  lifecycle.created(live());
  await lifecycle.joined(EP);
  // `profile QUAR member add c1` (what the CLI writes), then the container restarts.
  const k = `c1/${EP}`;
  store.rows.set(k, { ...store.rows.get(k)!, profile_ids: ['QUAR'] });
  await lifecycle.deleted(EP);
  const EP2 = 'f'.repeat(64);
  lifecycle.created({ ...live(), endpointId: EP2, name: 'califffffffffff' });
  const ep = await lifecycle.joined(EP2);
  assert.deepEqual(ep?.profile_ids, ['QUAR']);
  assert.deepEqual(registry.get(EP2)?.profile_ids, ['QUAR']);
  assert.deepEqual(seen, [['OPEN'], ['QUAR']]);
  assert.deepEqual([...store.rows.values()].map((e) => [e.endpointId, e.state, e.profile_ids.join()]), [[EP2, 'active', 'QUAR']]);
});

test('reservation book: bounded, oldest first; found by address', () => {
  const book = new ReservationBook();
  for (let i = 0; i <= 10000; i++) book.set(`c${i}`, { handle: `h${i}`, ipv4: `10.1.${i >> 8}.${i & 255}`, profiles: [] });
  assert.equal(book.get('c0'), undefined);
  assert.equal(book.containerOf('10.1.0.0'), undefined, 'the evicted entry\'s address goes with it');
  assert.equal(book.get('c10000')?.handle, 'h10000');
  assert.equal(book.get('c1')?.handle, 'h1');
  assert.equal(book.containerOf('10.1.0.1')?.containerId, 'c1');
  book.delete('c1');
  assert.equal(book.containerOf('10.1.0.1'), undefined);
});
