import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type { Ipam } from '../../src/ipam/types';
import { HostDataplane } from '../../src/dataplane/host-dataplane';
import type { EndpointStore } from '../../src/datastore';
import { EndpointLifecycle } from '../../src/endpoints/lifecycle';
import { EndpointRegistry } from '../../src/endpoints/registry';
import { ReservationBook } from '../../src/endpoints/reservations';
import { IpamDriver, poolFamily } from '../../src/plugin/ipam-driver';
import { NetworkDriver } from '../../src/plugin/network-driver';
import { buildPluginServer } from '../../src/plugin/server';
import { POOL_ID_V4, POOL_ID_V6 } from '../../src/names';

// The API edge: routes, content types, schemas and the {"Err"} shape. Calls
// here never reach IPAM or the kernel; an IPAM that is touched fails the test.
const log = pino({ level: 'silent' });
function untouchableOf<T extends object>(what: string): T {
  return new Proxy({} as T, {
    get: (_t, p) => () => {
      throw new Error(`${what}.${String(p)} must not be called here`);
    },
  });
}
const untouchable = untouchableOf<Ipam>('IPAM');
const endpoints = new EndpointRegistry();
const dataplane = new HostDataplane(log);
const lifecycle = new EndpointLifecycle({ host: 'h1', store: untouchableOf<EndpointStore>('EndpointStore'), registry: endpoints, reservations: new ReservationBook(), ipam: untouchable, log });
const app = buildPluginServer({
  network: new NetworkDriver({ host: 'h1', dataplane, endpoints, lifecycle, log }),
  ipam: new IpamDriver({ ipam: untouchable, hostname: 'h1', endpoints, log }),
  log,
});
after(async () => {
  await app.close();
  dataplane.close();
});

const V12 = 'application/vnd.docker.plugins.v1.2+json';
async function call(method: string, body: unknown, contentType = V12) {
  const r = await app.inject({
    method: 'POST',
    url: `/${method}`,
    headers: { 'content-type': contentType },
    payload: body === undefined ? '' : JSON.stringify(body),
  });
  return { status: r.statusCode, body: r.json() as Record<string, unknown> };
}

test('Activate announces both drivers, with Docker\'s content type and an empty body', async () => {
  const r = await call('Plugin.Activate', undefined, 'application/vnd.docker.plugins.v1+json');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { Implements: ['NetworkDriver', 'IpamDriver'] });
});

test('capabilities: local scope network driver, IPAM needs no MAC', async () => {
  assert.deepEqual((await call('NetworkDriver.GetCapabilities', {})).body, { Scope: 'local', ConnectivityScope: 'local' });
  const ipam = await call('IpamDriver.GetCapabilities', {});
  assert.equal(ipam.body.RequiresMACAddress, false);
  const spaces = await call('IpamDriver.GetDefaultAddressSpaces', {});
  assert.ok(spaces.body.LocalDefaultAddressSpace);
});

test('RequestPool hands out the whole space per family; anything narrower is refused with advice', async () => {
  assert.deepEqual((await call('IpamDriver.RequestPool', { AddressSpace: 'x', Pool: '0.0.0.0/0' })).body, {
    PoolID: POOL_ID_V4,
    Pool: '0.0.0.0/0',
    Data: {},
  });
  assert.equal((await call('IpamDriver.RequestPool', { Pool: '', V6: true })).body.PoolID, POOL_ID_V6);
  assert.equal((await call('IpamDriver.RequestPool', { V6: true })).body.Pool, '::/0');
  const narrow = await call('IpamDriver.RequestPool', { Pool: '10.0.0.0/24' });
  assert.equal(narrow.status, 400);
  assert.match(String(narrow.body.Err), /--subnet 0\.0\.0\.0\/0 .*calicoctl pool add/);
  assert.match(String((await call('IpamDriver.RequestPool', { Pool: '0.0.0.0/0', SubPool: '10.0.0.0/24' })).body.Err), /--ip-range/);
});

test('the gateway request is answered with 169.254.1.1/32 (IPv6: the host veth link-local) without IPAM', async () => {
  const opts = { RequestAddressType: 'com.docker.network.gateway' };
  assert.equal((await call('IpamDriver.RequestAddress', { PoolID: POOL_ID_V4, Address: '', Options: opts })).body.Address, '169.254.1.1/32');
  assert.equal((await call('IpamDriver.RequestAddress', { PoolID: POOL_ID_V6, Options: opts })).body.Address, 'fe80::ecee:eeff:feee:eeee/128');
  // Docker releases the gateway with the network: nothing to free.
  assert.deepEqual((await call('IpamDriver.ReleaseAddress', { PoolID: POOL_ID_V4, Address: '169.254.1.1' })).body, {});
});

test('invalid bodies get 400 and an Err naming the field', async () => {
  const r = await call('NetworkDriver.Join', { NetworkID: 'n' });
  assert.equal(r.status, 400);
  assert.match(String(r.body.Err), /invalid NetworkDriver\.Join request: EndpointID: Required/);
  const bad = await app.inject({ method: 'POST', url: '/IpamDriver.RequestPool', headers: { 'content-type': V12 }, payload: '{nope' });
  assert.equal(bad.statusCode, 400);
  assert.match(String(bad.json().Err), /not JSON/);
  assert.match(String((await call('IpamDriver.RequestAddress', { PoolID: 'other' })).body.Err), /unknown pool id "other"/);
  assert.match(String((await call('IpamDriver.ReleaseAddress', { PoolID: POOL_ID_V4, Address: 'x.y' })).body.Err), /not an IP address/);
});

test('unknown methods answer 404 with an Err; Join of an unknown endpoint says what to do', async () => {
  const r = await call('NetworkDriver.AllocateNetwork', {});
  assert.equal(r.status, 404);
  assert.match(String(r.body.Err), /does not implement NetworkDriver\.AllocateNetwork/);
  const j = await call('NetworkDriver.Join', { NetworkID: 'n', EndpointID: 'e'.repeat(64), SandboxKey: '/x' });
  assert.match(String(j.body.Err), /unknown to the calico plugin.*start the container again/);
});

test('CreateEndpoint without any address is refused before touching the host', async () => {
  const r = await call('NetworkDriver.CreateEndpoint', { NetworkID: 'n', EndpointID: 'a'.repeat(64), Interface: {} });
  assert.equal(r.status, 400);
  assert.match(String(r.body.Err), /--ipam-driver/);
  assert.equal(endpoints.list().length, 0);
});

test('teardown calls are no-ops that always succeed (Docker retries nothing)', async () => {
  for (const m of ['NetworkDriver.Leave', 'NetworkDriver.ProgramExternalConnectivity', 'NetworkDriver.RevokeExternalConnectivity']) {
    assert.deepEqual((await call(m, { NetworkID: 'n', EndpointID: 'e' })).body, {}, m);
  }
  assert.deepEqual((await call('NetworkDriver.DiscoverNew', { DiscoveryType: 1 })).body, {});
  assert.deepEqual((await call('IpamDriver.ReleasePool', { PoolID: POOL_ID_V4 })).body, {});
});

test('pool ids map to address families', () => {
  assert.equal(poolFamily(POOL_ID_V4), 4);
  assert.equal(poolFamily(POOL_ID_V6), 6);
  assert.throws(() => poolFamily('x'), /not created by calico IPAM/);
});
