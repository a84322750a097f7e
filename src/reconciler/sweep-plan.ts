// Pure: compares what the datastore holds for this host (allocations,
// endpoints) with what dockerd holds (containers) and decides what to
// release, adopt and (re)record. The one rule that matters: nothing is
// released while its container exists, and an allocation that never had a
// container is collected only after two sightings a grace period apart.
import { RESERVATION_HANDLE_PREFIX } from '../names';
import type { Allocation } from '../ipam/types';
;
import { ContainerView, endpointFromContainer, handleOf, isRunning } from '../endpoints/container-view';
import { Endpoint, sameEndpoint } from '../endpoints/model';

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
  /** Orphan handle -> when it was first seen without an owner. */
  sightings: ReadonlyMap<string, number>;
}

export interface SweepPlan {
  release: { handle: string; reason: string }[];
  adopt: { handle: string; container: string }[];
  removeEndpoints: Endpoint[];
  record: Endpoint[];
  sightings: Map<string, number>;
}

/**
 * Allocations must be listed before containers: an allocation that names
 * its container was made by a create dockerd had already answered, so a
 * container missing from the later listing really is gone.
 */
export function planSweep(input: SweepInput): SweepPlan {
  const plan: SweepPlan = { release: [], adopt: [], removeEndpoints: [], record: [], sightings: new Map() };
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
    // No container names this handle. Only our own reservations are
    // collected this way: other handles (the IPAM driver's) have owners the
    // driver tracks.
    if (!handle.startsWith(RESERVATION_HANDLE_PREFIX) || input.inflight(handle)) continue;
    const first = input.sightings.get(handle);
    if (first === undefined) {
      plan.sightings.set(handle, input.now);
    } else if (input.now - first >= input.graceMs) {
      plan.release.push({ handle, reason: `reservation without a container for ${Math.round((input.now - first) / 1000)} s` });
    } else {
      plan.sightings.set(handle, first);
    }
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
