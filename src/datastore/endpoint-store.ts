// Workload endpoints: /calico/v1/host/<h>/workload/docker/<cid>/endpoint/<epid>,
// the 2015 endpoint JSON. Felix on every host reads them; the container
// networking writes them.
import { Datastore, json } from './datastore';
import { checkId, keys, parseEndpointKey } from './keys';
import { EndpointValue } from './schemas';

export interface EndpointId {
  host: string;
  containerId: string;
  endpointId: string;
}

/** An endpoint: where it lives (from the key) plus the stored 2015 JSON. */
export interface Endpoint extends EndpointId, Omit<EndpointValue, never> {}

export function endpointValue(ep: Endpoint): EndpointValue {
  const v: EndpointValue = {
    state: ep.state,
    name: ep.name,
    mac: ep.mac,
    'container:if_name': ep['container:if_name'],
    profile_ids: ep.profile_ids,
    ipv4_nets: ep.ipv4_nets,
    ipv6_nets: ep.ipv6_nets,
  };
  if (ep.ipv4_gateway !== undefined) v.ipv4_gateway = ep.ipv4_gateway;
  if (ep.ipv6_gateway !== undefined) v.ipv6_gateway = ep.ipv6_gateway;
  return v;
}

/** The endpoint stored at `id`'s key with value `v`. */
export function endpointFromValue(id: EndpointId, v: EndpointValue): Endpoint {
  return { host: id.host, containerId: id.containerId, endpointId: id.endpointId, ...v };
}

export class EndpointStore {
  constructor(private readonly ds: Datastore) {}

  private static key(id: EndpointId): string {
    checkId('host name', id.host);
    checkId('container id', id.containerId);
    checkId('endpoint id', id.endpointId);
    return keys.endpoint(id.host, id.containerId, id.endpointId);
  }

  /** Creates or replaces the endpoint (idempotent). The value is validated before it is written. */
  async put(ep: Endpoint): Promise<void> {
    const key = EndpointStore.key(ep);
    const value = endpointValue(ep);
    this.ds.decode(key, JSON.stringify(value), json(EndpointValue));
    await this.ds.put(key, value);
  }

  /**
   * Writes the endpoint and deletes every other endpoint of the same
   * container on the same host, in one transaction: a restarted container's
   * new record (new endpoint id, same address) never coexists with the old.
   */
  async replace(ep: Endpoint): Promise<void> {
    const key = EndpointStore.key(ep);
    const value = endpointValue(ep);
    this.ds.decode(key, JSON.stringify(value), json(EndpointValue));
    const others = (await this.ds.listKeys(keys.containerEndpointsDir(ep.host, ep.containerId))).filter((k) => k !== key);
    await this.ds.cas(`writing endpoint ${key}`, [], [{ key, value }], others);
  }

  async get(id: EndpointId): Promise<Endpoint | undefined> {
    const v = await this.ds.get(EndpointStore.key(id), json(EndpointValue));
    return v ? { ...id, ...v.value } : undefined;
  }

  /** Idempotent: false when it was already gone. */
  async delete(id: EndpointId): Promise<boolean> {
    return this.ds.delete(EndpointStore.key(id));
  }

  /** Removes every endpoint of a container on a host; returns how many. */
  async deleteContainer(host: string, containerId: string): Promise<number> {
    checkId('host name', host);
    checkId('container id', containerId);
    return this.ds.deletePrefix(keys.containerEndpointsDir(host, containerId));
  }

  /** Endpoints of one host, or of every host. Invalid values are reported and skipped. */
  async list(host?: string): Promise<Endpoint[]> {
    if (host) checkId('host name', host);
    const prefix = host ? keys.hostWorkloadsDir(host) : keys.hostsDir();
    const vs = await this.ds.list(prefix, json(EndpointValue), (k) => parseEndpointKey(k) !== undefined);
    return vs.map((v) => ({ ...parseEndpointKey(v.key)!, ...v.value }));
  }

  /** Endpoints of one container wherever it runs (a container id is unique cluster-wide). */
  async listForContainer(containerId: string): Promise<Endpoint[]> {
    return (await this.list()).filter((e) => e.containerId === containerId);
  }
}
