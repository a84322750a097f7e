// Pure: compares what the datastore holds for this host (allocations,
// endpoints) with what dockerd holds (containers) and decides what to
// release, adopt and (re)record. The one rule that matters: nothing is
// released while its container exists, and an allocation that never had a
// container is collected only after two sightings a grace period apart.
import { RESERVATION_HANDLE_PREFIX } from '../names';
import type { Allocation } from '../ipam/types';
;
import {
  ContainerView,
  EndpointRecord,
  endpointFromContainer,
  handleOf,
  isRunning,
  sameEndpoint,
} from './container-endpoint';

export interface SweepInput {
  host: string;
  now: number;
  graceMs: number;
  /** This host's allocations, listed BEFORE the containers (see planSweep). */
  allocations: Allocation[];
  /** This host's endpoint records. */
  endpoints: EndpointRecord[];
  /** Every container dockerd knows, running or not. */
  containers: ContainerView[];
  /** Handles whose create is still in flight through this proxy. */
  inflight(handle: string): boolean;
  /** Orphan handle -> when it was first seen without an owner. */
  sightings: ReadonlyMap<string, number>;
  ifNameFor(endpointId: string): string;
}

export interface SweepPlan {
  release: { handle: string; reason: string }[];
  adopt: { handle: string; container: string }[];
  removeEndpoints: EndpointRecord[];
  record: EndpointRecord[];
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

  const recorded = new Map<string, EndpointRecord[]>();
  for (const ep of input.endpoints) {
    recorded.set(ep.workloadId, [...(recorded.get(ep.workloadId) ?? []), ep]);
    if (!byId.has(ep.workloadId)) plan.removeEndpoints.push(ep);
  }
  for (const c of input.containers) {
    const mine = recorded.get(c.Id) ?? [];
    if (isRunning(c)) {
      const want = endpointFromContainer(c, input.host, input.ifNameFor);
      if (want && !mine.some((ep) => sameEndpoint(ep, want))) plan.record.push(want);
      // Records of earlier starts (another endpoint id), or of a container
      // taken off the calico network by hand, go.
      plan.removeEndpoints.push(...mine.filter((ep) => !want || ep.endpointId !== want.endpointId));
    } else {
      for (const ep of mine) {
        if (ep.state === 'active') plan.record.push({ ...ep, state: 'inactive' });
      }
    }
  }
  return plan;
}
