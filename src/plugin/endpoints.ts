import { EventEmitter } from 'node:events';

/** What the node knows about one endpoint the network driver created. */
export interface PluginEndpoint {
  endpointId: string;
  networkId: string;
  /** Host end of the veth (`cali...`). */
  interfaceName: string;
  /** MAC of the container end (eth0 inside the container). */
  mac: string;
  /** Container addresses with prefix length: `10.0.0.5/32`, `fd00::5/128`. */
  addresses: string[];
  ipv4?: string;
  ipv6?: string;
  /** Set by Join: the container's network namespace path. */
  sandboxKey?: string;
}

export interface EndpointRegistryEvents {
  added: [PluginEndpoint];
  joined: [PluginEndpoint];
  removed: [PluginEndpoint];
}

/**
 * In-process registry of live endpoints, by endpoint id. The proxy's start
 * interceptor reads it to record endpoints in etcd; the IPAM driver reads it
 * to refuse an address a running container already has.
 */
export class EndpointRegistry extends EventEmitter<EndpointRegistryEvents> {
  private readonly byId = new Map<string, PluginEndpoint>();
  private readonly byAddress = new Map<string, PluginEndpoint>();

  get(endpointId: string): PluginEndpoint | undefined {
    return this.byId.get(endpointId);
  }

  /** The live endpoint holding this address (no prefix length), if any. */
  findByAddress(address: string): PluginEndpoint | undefined {
    return this.byAddress.get(address);
  }

  list(): PluginEndpoint[] {
    return [...this.byId.values()];
  }

  add(ep: PluginEndpoint): void {
    this.remove(ep.endpointId);
    this.byId.set(ep.endpointId, ep);
    for (const a of [ep.ipv4, ep.ipv6]) if (a) this.byAddress.set(a, ep);
    this.emit('added', ep);
  }

  markJoined(endpointId: string, sandboxKey: string | undefined): PluginEndpoint | undefined {
    const ep = this.byId.get(endpointId);
    if (!ep) return undefined;
    ep.sandboxKey = sandboxKey;
    this.emit('joined', ep);
    return ep;
  }

  /** Forgets everything without events: a restarted plugin relearns its endpoints from Docker. */
  reset(): void {
    this.byId.clear();
    this.byAddress.clear();
  }

  /** Idempotent. */
  remove(endpointId: string): PluginEndpoint | undefined {
    const ep = this.byId.get(endpointId);
    if (!ep) return undefined;
    this.byId.delete(endpointId);
    for (const a of [ep.ipv4, ep.ipv6]) if (a && this.byAddress.get(a) === ep) this.byAddress.delete(a);
    this.emit('removed', ep);
    return ep;
  }
}
