import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { EndpointRegistry } from '../../src/endpoints/registry';
import type { Allocation, Ipam } from '../../src/ipam/types';
import { OWNER_ATTR } from '../../src/ipam/owner';
import { HANDLE_LABEL, POOL_ID_V4, calicoNetworkName } from '../../src/names';
import type { ListedContainer } from '../../src/plugin/address-claim';
import { IpamDriver } from '../../src/plugin/ipam-driver';

// The ownership check of a held address (a container started with the
// address the proxy reserved for it) is on every calico start's path: what
// it asks dockerd must not grow with the containers running on the host.
// The stand-in applies dockerd's filter semantics (id, label, network,
// status) to a host of 200 running calico containers plus the two that matter.

const ADDRESS = '10.65.0.7';

function host(): ListedContainer[] {
  const onCalico = (ip?: string) => ({ Networks: { [calicoNetworkName()]: { IPAMConfig: ip ? { IPv4Address: ip } : null } } });
  const running = Array.from({ length: 200 }, (_, i) => ({ Id: `run${i}`, State: 'running', Labels: {}, NetworkSettings: onCalico(`10.65.1.${i}`) }));
  return [
    ...running,
    { Id: 'owner', Names: ['/web'], State: 'created', Labels: { [HANDLE_LABEL]: 'resv-1' }, NetworkSettings: onCalico(ADDRESS) },
    { Id: 'other', Names: ['/other'], State: 'exited', Labels: {}, NetworkSettings: onCalico('10.65.2.1') },
  ];
}

function dockerd(containers: ListedContainer[]) {
  const asked: Record<string, string[]>[] = [];
  let returned = 0;
  const match = (c: ListedContainer, f: Record<string, string[]>) =>
    (!f.id || f.id.includes(c.Id)) &&
    (!f.label || f.label.every((l) => { const [k, v] = l.split('='); return c.Labels?.[k] === v; })) &&
    (!f.network || f.network.some((n) => !!c.NetworkSettings?.Networks?.[n])) &&
    (!f.status || f.status.includes(c.State ?? ''));
  return {
    asked,
    returned: () => returned,
    view: {
      containers: async (filters: Record<string, string[]>) => {
        asked.push(filters);
        const out = containers.filter((c) => match(c, filters ?? {}));
        returned += out.length;
        return out;
      },
      answers: async () => true,
    },
  };
}

function driver(owner: Allocation, view: ReturnType<typeof dockerd>['view']) {
  const ipam = { lookup: async (a: string) => (a === ADDRESS ? owner : undefined), setAttrs: async () => undefined } as unknown as Ipam;
  return new IpamDriver({ ipam, hostname: 'h1', endpoints: new EndpointRegistry(), log: pino({ level: 'silent' }), docker: view });
}

const held = (attrs: Record<string, string>): Allocation => ({ address: ADDRESS, family: 4, handle: 'resv-1', host: 'h1', attrs } as Allocation);

test('the held address goes to its recorded owner; dockerd is asked for the owner and the calico containers not running, never the running ones', async () => {
  const d = dockerd(host());
  const r = await driver(held({ [OWNER_ATTR]: 'owner' }), d.view).requestAddress({ PoolID: POOL_ID_V4, Address: ADDRESS });
  assert.equal(r.Address, `${ADDRESS}/32`);
  assert.ok(d.asked.length > 0 && d.asked.every((f) => Object.keys(f).length > 0), 'every list is filtered');
  assert.ok(d.returned() <= 3, `dockerd listed ${d.returned()} containers for one start on a host running 200`);
});

test('before its id is recorded, the owner is found by its handle label, again without the running containers', async () => {
  const d = dockerd(host());
  const r = await driver(held({}), d.view).requestAddress({ PoolID: POOL_ID_V4, Address: ADDRESS });
  assert.equal(r.Address, `${ADDRESS}/32`);
  assert.ok(d.returned() <= 3, `dockerd listed ${d.returned()} containers`);
});
