// One endpoint's life, in one place. The network driver creates it
// (CreateEndpoint), names its container and writes it to etcd before Join
// returns, so the record (and whatever policy or routes are computed from
// it) exists before the container's process starts; DeleteEndpoint removes
// it. The reconciler and `calicoctl container add|remove` go through the same
// methods for what happens behind the plugin's back.
import type { Logger } from 'pino';
import type { EndpointStore } from '../datastore/endpoint-store';
import type { Ipam } from '../ipam/types';
import { RESERVATION_HANDLE_PREFIX } from '../names';
import { Endpoint, addressesOf, sameEndpoint, withDefaultProfile } from './model';
import type { EndpointRegistry } from './registry';
import type { ReservationBook } from './reservations';
import type { StartTrace } from './start-trace';

export interface EndpointLifecycleOptions {
  host: string;
  store: EndpointStore;
  registry: EndpointRegistry;
  reservations: ReservationBook;
  /** Who owns an address (names the container of a reservation after a node restart). */
  ipam: Pick<Ipam, 'lookup'>;
  /** Join's record and policy steps, timed per start. */
  trace?: StartTrace;
  log: Logger;
}

/** Runs after an endpoint is recorded and before Join returns (policy programs its chains here). */
export type RecordedHook = (ep: Endpoint) => Promise<void>;

/** How long a deleted endpoint id is remembered: a record still on its way must not bring it back. */
const TOMBSTONE_MS = 60000;

export class EndpointLifecycle {
  /** What this process last wrote per container: a start seen twice (Join and start event) is written once. */
  private readonly written = new Map<string, Endpoint>();
  private readonly deletedAt = new Map<string, number>();
  private readonly hooks: RecordedHook[] = [];

  constructor(private readonly o: EndpointLifecycleOptions) {}

  get host(): string {
    return this.o.host;
  }

  /** Registers a hook run after every record, before Join returns. */
  onRecorded(hook: RecordedHook): void {
    this.hooks.push(hook);
  }

  /** CreateEndpoint: the endpoint is live in this process; its container is named at Join. */
  created(ep: Endpoint): void {
    this.deletedAt.delete(ep.endpointId);
    this.o.registry.set(ep);
  }

  /**
   * Join: names the endpoint's container from the reservation that holds its
   * address and writes the record. Endpoints of containers started without
   * the proxy (`--net calico` on Docker's own socket) have no reservation:
   * the reconciler records those at their start event.
   */
  async joined(endpointId: string): Promise<Endpoint | undefined> {
    const ep = this.o.registry.get(endpointId);
    if (!ep) return undefined;
    const owner = ep.containerId ? { containerId: ep.containerId, profiles: ep.profile_ids } : await this.ownerOf(ep);
    if (!owner) {
      this.o.log.debug({ endpoint: endpointId }, 'endpoint without a reservation: recorded at its container\'s start event');
      return ep;
    }
    const named: Endpoint = { ...ep, containerId: owner.containerId, profile_ids: withDefaultProfile(owner.profiles) };
    this.o.registry.set(named);
    await this.record(named);
    return this.o.registry.get(endpointId) ?? named;
  }

  /**
   * Writes the endpoint, replacing every other record of its container on
   * this host in the same transaction, then runs the recorded hooks. The
   * profiles of a record the container already has are kept (the operator's
   * `member add|remove` is the truth after creation): the hooks and the
   * registry see what was written. Returns what was written, or undefined
   * when the endpoint was deleted meanwhile (its record is left inactive).
   */
  async record(ep: Endpoint): Promise<Endpoint | undefined> {
    if (this.deletedAt.has(ep.endpointId)) return undefined;
    const before = this.written.get(ep.containerId);
    if (before && sameEndpoint(before, { ...ep, profile_ids: before.profile_ids })) return before;
    let written: Endpoint;
    const trace = this.o.trace;
    let at = trace?.now() ?? 0;
    try {
      written = await this.o.store.record(ep);
    } catch (e) {
      throw new Error(`recording endpoint ${ep.endpointId.slice(0, 12)} of container ${ep.containerId.slice(0, 12)}: ${(e as Error).message}`);
    }
    // DeleteEndpoint (a container that exits at once) may have run while the
    // record was on its way: then the record is left inactive.
    if (this.deletedAt.has(ep.endpointId)) {
      await this.o.store.deactivate(ep);
      return undefined;
    }
    if (this.o.registry.get(ep.endpointId)) this.o.registry.set(written);
    this.written.set(ep.containerId, written);
    this.o.log.debug(
      { container: ep.containerId, endpoint: ep.endpointId, addresses: [...ep.ipv4_nets, ...ep.ipv6_nets], profiles: written.profile_ids },
      'endpoint recorded',
    );
    if (trace) {
      trace.endpointOf(ep.endpointId, ep.containerId);
      trace.joinStep(ep.endpointId, 'record', trace.now() - at);
      at = trace.now();
    }
    for (const hook of this.hooks) await hook(written);
    trace?.joinStep(ep.endpointId, 'policy', trace.now() - at);
    return written;
  }

  /**
   * DeleteEndpoint (the container stopped): the endpoint goes; its record
   * stays, inactive, keeping the container's profiles for its next start.
   * The record goes with the container (forgetContainer, the sweep). Idempotent.
   */
  async deleted(endpointId: string): Promise<void> {
    this.tombstone(endpointId);
    const ep = this.o.registry.remove(endpointId);
    if (!ep?.containerId) return;
    if (this.written.get(ep.containerId)?.endpointId === endpointId) this.written.delete(ep.containerId);
    await this.o.store.deactivate(ep);
  }

  /** A record whose endpoint this process deleted (a start event arriving late): left inactive. Idempotent. */
  async deactivate(ep: Endpoint): Promise<void> {
    if (this.written.get(ep.containerId)?.endpointId === ep.endpointId) this.written.delete(ep.containerId);
    await this.o.store.deactivate(ep);
  }

  /** A record the reconciler found stale (its container is gone or runs another endpoint). Idempotent. */
  async removeRecord(ep: Endpoint): Promise<void> {
    if (this.written.get(ep.containerId)?.endpointId === ep.endpointId) this.written.delete(ep.containerId);
    await this.o.store.delete(ep);
  }

  /** The container is gone: every record of it on this host, and what we noted about it. Idempotent. */
  forgetContainer(containerId: string): Promise<number> {
    const ep = this.written.get(containerId);
    if (ep) this.tombstone(ep.endpointId);
    this.written.delete(containerId);
    this.o.reservations.delete(containerId);
    return this.o.store.deleteContainer(this.o.host, containerId);
  }

  private tombstone(endpointId: string): void {
    const now = Date.now();
    this.deletedAt.set(endpointId, now);
    for (const [id, at] of this.deletedAt) if (now - at > TOMBSTONE_MS) this.deletedAt.delete(id);
  }

  /** The container (and its profiles) whose reservation holds the endpoint's address. */
  private async ownerOf(ep: Endpoint): Promise<{ containerId: string; profiles: string[] } | undefined> {
    const { ipv4, ipv6 } = addressesOf(ep);
    for (const a of [ipv4, ipv6]) {
      const r = a ? this.o.reservations.containerOf(a) : undefined;
      if (r) return { containerId: r.containerId, profiles: r.reservation.profiles };
    }
    // After a node restart the book is empty; the reservation names its container in IPAM.
    const address = ipv4 ?? ipv6;
    const alloc = address ? await this.o.ipam.lookup(address) : undefined;
    if (!alloc || alloc.host !== this.o.host || !alloc.handle.startsWith(RESERVATION_HANDLE_PREFIX) || !alloc.attrs.container) return undefined;
    return { containerId: alloc.attrs.container, profiles: (alloc.attrs.profiles ?? '').split(',').filter(Boolean) };
  }
}
