// What the create interceptor reserved for each container it created, kept
// in memory so the start path can record the endpoint without asking dockerd
// (an inspect right after start waits behind dockerd's own bookkeeping of a
// process that may already have exited). Lost on a node restart: the start
// path then falls back to inspecting.

export interface Reservation {
  handle: string;
  ipv4?: string;
  ipv6?: string;
  profiles: string[];
}

/** Bounded: the oldest entries go first; a miss only costs an inspect. */
const MAX_ENTRIES = 10000;

export class ReservationBook {
  private readonly byContainer = new Map<string, Reservation>();

  set(containerId: string, r: Reservation): void {
    this.byContainer.delete(containerId);
    this.byContainer.set(containerId, r);
    if (this.byContainer.size > MAX_ENTRIES) {
      const oldest = this.byContainer.keys().next().value;
      if (oldest !== undefined) this.byContainer.delete(oldest);
    }
  }

  get(containerId: string): Reservation | undefined {
    return this.byContainer.get(containerId);
  }

  delete(containerId: string): void {
    this.byContainer.delete(containerId);
  }
}
