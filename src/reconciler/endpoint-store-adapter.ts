// EndpointPort on the datastore's EndpointStore: this node's records in the
// 2015 endpoint JSON under /calico/v1/host/<h>/workload/docker/<cid>/endpoint/<epid>.
import type { Endpoint, EndpointStore } from '../datastore/endpoint-store';
import { GATEWAY_V4, GATEWAY_V6 } from '../names';
import type { EndpointRecord } from './container-endpoint';
import type { EndpointPort } from './endpoint-port';

/** The container-side interface name Docker gives the calico network's interface. */
const CONTAINER_IF = 'eth0';

export function toStored(ep: EndpointRecord): Endpoint {
  return {
    host: ep.host,
    containerId: ep.workloadId,
    endpointId: ep.endpointId,
    state: ep.state,
    name: ep.ifName,
    mac: ep.mac,
    'container:if_name': CONTAINER_IF,
    profile_ids: ep.profiles,
    ipv4_nets: ep.ipv4Nets,
    ipv6_nets: ep.ipv6Nets,
    ipv4_gateway: ep.ipv4Nets.length ? GATEWAY_V4 : null,
    ipv6_gateway: ep.ipv6Nets.length ? GATEWAY_V6 : null,
  };
}

export function fromStored(e: Endpoint): EndpointRecord {
  return {
    host: e.host,
    orchestrator: 'docker',
    workloadId: e.containerId,
    endpointId: e.endpointId,
    ifName: e.name,
    mac: e.mac,
    ipv4Nets: e.ipv4_nets,
    ipv6Nets: e.ipv6_nets,
    profiles: e.profile_ids,
    state: e.state,
  };
}

export class EndpointStorePort implements EndpointPort {
  /** Endpoint id this process last recorded per host/container. */
  private readonly written = new Map<string, string>();

  /** The store, or how to reach it once the datastore is up. */
  constructor(private readonly source: EndpointStore | (() => EndpointStore)) {}

  private get store(): EndpointStore {
    return typeof this.source === 'function' ? this.source() : this.source;
  }

  async listByHost(host: string): Promise<EndpointRecord[]> {
    return (await this.store.list(host)).map(fromStored);
  }

  async put(ep: EndpointRecord): Promise<void> {
    // One write on the start path: the common case is a container's first
    // endpoint. A restarted container has a new endpoint id; the record of
    // its previous start, if this process wrote it, goes after.
    const key = `${ep.host}/${ep.workloadId}`;
    await this.store.put(toStored(ep));
    const previous = this.written.get(key);
    this.written.set(key, ep.endpointId);
    if (previous && previous !== ep.endpointId) {
      await this.store.delete({ host: ep.host, containerId: ep.workloadId, endpointId: previous });
    }
  }

  async removeEndpoint(ep: EndpointRecord): Promise<void> {
    await this.store.delete({ host: ep.host, containerId: ep.workloadId, endpointId: ep.endpointId });
    const key = `${ep.host}/${ep.workloadId}`;
    if (this.written.get(key) === ep.endpointId) this.written.delete(key);
  }

  removeWorkload(host: string, workloadId: string): Promise<number> {
    this.written.delete(`${host}/${workloadId}`);
    return this.store.deleteContainer(host, workloadId);
  }
}
