// What the create interceptor reserved for each container it created, kept
// in memory so the plugin's Join can name the container (and its profiles)
// from the address Docker hands it, without asking dockerd, which is busy
// starting that very container. Lost on a node restart: Join then falls back
// to the reservation's attributes in IPAM.

export interface Reservation {
  handle: string;
  ipv4?: string;
  ipv6?: string;
  profiles: string[];
}

/** Bounded: the oldest entries go first; a miss only costs an IPAM lookup. */
const MAX_ENTRIES = 10000;

export class ReservationBook {
  private readonly byContainer = new Map<string, Reservation>();
  private readonly byAddress = new Map<string, string>();

  set(containerId: string, r: Reservation): void {
    this.delete(containerId);
    this.byContainer.set(containerId, r);
    for (const a of [r.ipv4, r.ipv6]) if (a) this.byAddress.set(a, containerId);
    if (this.byContainer.size > MAX_ENTRIES) {
      const oldest = this.byContainer.keys().next().value;
      if (oldest !== undefined) this.delete(oldest);
    }
  }

  get(containerId: string): Reservation | undefined {
    return this.byContainer.get(containerId);
  }

  /** The container whose reservation holds this address (no prefix length). */
  containerOf(address: string): { containerId: string; reservation: Reservation } | undefined {
    const containerId = this.byAddress.get(address);
    const reservation = containerId ? this.byContainer.get(containerId) : undefined;
    return containerId && reservation ? { containerId, reservation } : undefined;
  }

  delete(containerId: string): void {
    const r = this.byContainer.get(containerId);
    if (!r) return;
    this.byContainer.delete(containerId);
    for (const a of [r.ipv4, r.ipv6]) if (a && this.byAddress.get(a) === containerId) this.byAddress.delete(a);
  }
}
