// Pure: compares what the datastore holds for this host (allocations,
// endpoints) with what dockerd holds (containers) and decides what to
// release, adopt and (re)record. The one rule that matters: nothing is
// released while its container exists, and an allocation that never had a
// container is collected only after two sightings a grace period apart.
// The same rule collects what dead processes left in IPAM: block claims left
// pending (or naming no block of their host), Docker-driver ("docker-")
// addresses whose release Docker could not deliver, and empty blocks left
// outside every pool by a `pool remove` cut short.
import { ContainerView, endpointFromContainer, handleOf, isRunning } from '../endpoints/container-view';
import { Endpoint, sameEndpoint } from '../endpoints/model';
import { canonicalAddress } from '../address/cidr';
import type { Allocation, OrphanBlock, StaleAffinity } from '../ipam/types';
import { DOCKER_HANDLE_PREFIX, RESERVATION_HANDLE_PREFIX } from '../names';

export interface SweepInput {
  host: string;
  now: number;
  graceMs: number;
  /** This host's allocations, listed BEFORE the containers (see planSweep). */
  allocations: Allocation[];
  /** This host's endpoint records. */
  endpoints: Endpoint[];
  /** Every container dockerd knows, running or not. */
  containers: ContainerView[];
  /** Handles whose create is still in flight through this proxy. */
  inflight(handle: string): boolean;
  /**
   * Orphan handle -> when it was first seen without an owner; stale affinity
   * (affinitySighting key) -> when first seen at that revision.
   */
  sightings: ReadonlyMap<string, number>;
  /** Stale block affinities of any host (listStaleAffinities), if the IPAM lists them. */
  staleAffinities?: StaleAffinity[];
  /** Blocks inside no pool (listOrphanBlocks), if the IPAM lists them. */
  orphanBlocks?: OrphanBlock[];
}

export interface SweepPlan {
  release: { handle: string; reason: string }[];
  adopt: { handle: string; container: string }[];
  removeEndpoints: Endpoint[];
  record: Endpoint[];
  /** Stale affinities seen at the same revision a grace apart: confirm or withdraw (settleAffinity). */
  settleAffinities: { affinity: StaleAffinity; reason: string }[];
  /** Empty blocks outside every pool, unchanged a grace apart: remove (removeOrphanBlock). */
  removeOrphanBlocks: { block: OrphanBlock; reason: string }[];
  /** Blocks outside every pool that still hold addresses: left alone, said once a grace (the operator's to settle). */
  keptOrphanBlocks: { block: OrphanBlock; reason: string }[];
  sightings: Map<string, number>;
}

/** Sighting key of a stale affinity: a space never occurs in a handle, so no clash with one. */
export function affinitySighting(a: StaleAffinity): string {
  return `affinity ${a.host}/${a.family}/${a.block}@${a.revision}`;
}

/** Sighting key of a block outside every pool (at one revision). */
export function orphanBlockSighting(b: OrphanBlock): string {
  return `orphan-block ${b.family}/${b.block}@${b.revision}`;
}

/** Every address dockerd shows a container holding, on any network (canonical text). */
export function addressesHeld(containers: ContainerView[]): Set<string> {
  const out = new Set<string>();
  for (const c of containers) {
    for (const n of Object.values(c.NetworkSettings?.Networks ?? {})) {
      for (const a of [n?.IPAddress, n?.GlobalIPv6Address]) {
        if (!a) continue;
        try {
          out.add(canonicalAddress(a));
        } catch {
          out.add(a);
        }
      }
    }
  }
  return out;
}

/**
 * Allocations must be listed before containers: an allocation that names
 * its container was made by a create dockerd had already answered, so a
 * container missing from the later listing really is gone.
 */
export function planSweep(input: SweepInput): SweepPlan {
  const plan: SweepPlan = {
    release: [],
    adopt: [],
    removeEndpoints: [],
    record: [],
    settleAffinities: [],
    removeOrphanBlocks: [],
    keptOrphanBlocks: [],
    sightings: new Map(),
  };
  // Two sightings a grace apart, by this process's clock (never the writer's).
  const sighted = (key: string): { due: boolean; forMs: number } => {
    const first = input.sightings.get(key);
    if (first === undefined) {
      plan.sightings.set(key, input.now);
      return { due: false, forMs: 0 };
    }
    if (input.now - first >= input.graceMs) return { due: true, forMs: input.now - first };
    plan.sightings.set(key, first);
    return { due: false, forMs: input.now - first };
  };
  const held = addressesHeld(input.containers);
  const byId = new Map(input.containers.map((c) => [c.Id, c]));
  const byHandle = new Map<string, ContainerView>();
  for (const c of input.containers) {
    const h = handleOf(c);
    if (h) byHandle.set(h, c);
  }

  const handles = new Map<string, Allocation[]>();
  for (const a of input.allocations) {
    handles.set(a.handle, [...(handles.get(a.handle) ?? []), a]);
  }
  for (const [handle, allocs] of handles) {
    const owner = allocs.map((a) => a.attrs?.container).find((c): c is string => !!c);
    const labelled = byHandle.get(handle);
    if (labelled) {
      if (owner !== labelled.Id) plan.adopt.push({ handle, container: labelled.Id });
      continue;
    }
    if (owner) {
      if (!byId.has(owner)) plan.release.push({ handle, reason: `container ${owner.slice(0, 12)} no longer exists` });
      continue;
    }
    // No container names this handle. Docker-driver handles belong to
    // whichever container dockerd shows holding their address: none (for a
    // grace) means Docker's release was missed (node down, plugin killed).
    if (handle.startsWith(DOCKER_HANDLE_PREFIX)) {
      if (allocs.some((a) => held.has(a.address))) continue;
      const s = sighted(handle);
      const addrs = allocs.map((a) => a.address).join(', ');
      if (s.due) plan.release.push({ handle, reason: `Docker-driver address ${addrs} held by no container for ${Math.round(s.forMs / 1000)} s` });
      continue;
    }
    // Other handles without a container: only our own reservations are
    // collected this way.
    if (!handle.startsWith(RESERVATION_HANDLE_PREFIX) || input.inflight(handle)) continue;
    const s = sighted(handle);
    if (s.due) plan.release.push({ handle, reason: `reservation without a container for ${Math.round(s.forMs / 1000)} s` });
  }

  // Claims a dead process left: unchanged (same revision) a grace apart.
  for (const a of input.staleAffinities ?? []) {
    const s = sighted(affinitySighting(a));
    if (s.due) {
      plan.settleAffinities.push({ affinity: a, reason: `block claim ${a.block} of ${a.host} (${a.reason}) unchanged for ${Math.round(s.forMs / 1000)} s` });
    }
  }

  // Blocks a cut-short `pool remove` left outside every pool: an empty one,
  // unchanged a grace apart, goes; one holding addresses stays (its owners
  // still use them) and is reported when first seen, and again each grace.
  for (const b of input.orphanBlocks ?? []) {
    const s = sighted(orphanBlockSighting(b));
    const where = `block ${b.block}${b.host ? ` of ${b.host}` : ''} lies in no pool`;
    if (b.allocations > 0) {
      if (s.forMs === 0) plan.keptOrphanBlocks.push({ block: b, reason: `${where} but holds ${b.allocations} address${b.allocations === 1 ? '' : 'es'}: left as it is (release them, or pool add a pool around it)` });
      continue;
    }
    if (s.due) plan.removeOrphanBlocks.push({ block: b, reason: `${where} and holds no address, unchanged for ${Math.round(s.forMs / 1000)} s` });
  }

  const recorded = new Map<string, Endpoint[]>();
  for (const ep of input.endpoints) {
    recorded.set(ep.containerId, [...(recorded.get(ep.containerId) ?? []), ep]);
    if (!byId.has(ep.containerId)) plan.removeEndpoints.push(ep);
  }
  for (const c of input.containers) {
    const mine = recorded.get(c.Id) ?? [];
    if (isRunning(c)) {
      const fromDocker = endpointFromContainer(c, input.host);
      // Profiles are the datastore's once recorded (`calicoctl profile P member add`
      // changes them): a record of the same endpoint keeps its own.
      const same = fromDocker && mine.find((ep) => ep.endpointId === fromDocker.endpointId);
      const want = fromDocker && same ? { ...fromDocker, profile_ids: same.profile_ids } : fromDocker;
      if (want && !mine.some((ep) => sameEndpoint(ep, want))) plan.record.push(want);
      // Records of earlier starts (another endpoint id), or of a container
      // taken off the calico network by hand, go.
      plan.removeEndpoints.push(...mine.filter((ep) => !want || ep.endpointId !== want.endpointId));
    } else if (c.State !== 'created') {
      // (A container listed as "created" with a record is being started: its
      // Join wrote the record and its process is about to run. Marking it
      // inactive would take its policy chains away under its first packets.)
      for (const ep of mine) {
        if (ep.state === 'active') plan.record.push({ ...ep, state: 'inactive' });
      }
    }
  }
  return plan;
}
