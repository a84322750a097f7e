// The node's live endpoints, by endpoint id: those the network driver
// created in this process and those adopted from Docker at start. The
// IPAM driver asks it who holds an address; the lifecycle records from it.
import { Endpoint, addressesOf } from './model';

export class EndpointRegistry {
  private readonly byId = new Map<string, Endpoint>();
  private readonly byAddress = new Map<string, Endpoint>();

  get(endpointId: string): Endpoint | undefined {
    return this.byId.get(endpointId);
  }

  /** The live endpoint holding this address (no prefix length), if any. */
  findByAddress(address: string): Endpoint | undefined {
    return this.byAddress.get(address);
  }

  list(): Endpoint[] {
    return [...this.byId.values()];
  }

  /** Adds or replaces (same endpoint id). */
  set(ep: Endpoint): void {
    this.remove(ep.endpointId);
    this.byId.set(ep.endpointId, ep);
    const { ipv4, ipv6 } = addressesOf(ep);
    for (const a of [ipv4, ipv6]) if (a) this.byAddress.set(a, ep);
  }

  /** Forgets everything: a restarted plugin relearns its endpoints from Docker. */
  reset(): void {
    this.byId.clear();
    this.byAddress.clear();
  }

  /** Idempotent. */
  remove(endpointId: string): Endpoint | undefined {
    const ep = this.byId.get(endpointId);
    if (!ep) return undefined;
    this.byId.delete(endpointId);
    const { ipv4, ipv6 } = addressesOf(ep);
    for (const a of [ipv4, ipv6]) if (a && this.byAddress.get(a) === ep) this.byAddress.delete(a);
    return ep;
  }
}
