// Pure: what a Docker container's view (inspect or list) says about its
// Calico endpoint. Used by the reconciler (starts that bypassed the plugin's
// Join record, node restarts) and `calicoctl container add`.
import { HANDLE_LABEL, PROFILES_LABEL, calicoNetworkName } from '../names';
import { Endpoint, makeEndpoint, withDefaultProfile } from './model';

/** The parts of `docker inspect` / `docker ps` JSON that matter here (both shapes). */
export interface ContainerView {
  Id: string;
  /** inspect */
  Config?: { Labels?: Record<string, string> | null };
  /** inspect: an object; list: a word such as "running". */
  State?: { Running?: boolean } | string;
  /** list */
  Labels?: Record<string, string> | null;
  NetworkSettings?: {
    Networks?: Record<string, NetworkView | undefined> | null;
  };
}

export interface NetworkView {
  EndpointID?: string;
  IPAddress?: string;
  GlobalIPv6Address?: string;
  MacAddress?: string;
}

export function labelsOf(c: ContainerView): Record<string, string> {
  return c.Config?.Labels ?? c.Labels ?? {};
}

export function isRunning(c: ContainerView): boolean {
  return typeof c.State === 'string' ? c.State === 'running' : c.State?.Running === true;
}

/** The reservation handle the proxy put on the container, if any. */
export function handleOf(c: ContainerView): string | undefined {
  return labelsOf(c)[HANDLE_LABEL] || undefined;
}

/** Profiles recorded on a container by the create interceptor (CALICO_PROFILE). */
export function profilesFromLabels(labels: Record<string, string> | undefined | null): string[] {
  const v = labels?.[PROFILES_LABEL];
  return v ? v.split(',').filter(Boolean) : [];
}

/** The container's endpoint on the calico network, if it has one with an address. */
export function calicoNetworkOf(c: ContainerView): NetworkView | undefined {
  const n = c.NetworkSettings?.Networks?.[calicoNetworkName()];
  if (!n || !n.EndpointID || (!n.IPAddress && !n.GlobalIPv6Address)) return undefined;
  return n;
}

/**
 * The endpoint of a running container on the calico network, or undefined
 * when it has none (not on the network, or not started).
 */
export function endpointFromContainer(c: ContainerView, host: string): Endpoint | undefined {
  const n = calicoNetworkOf(c);
  if (!n || !n.EndpointID) return undefined;
  return makeEndpoint({
    host,
    containerId: c.Id,
    endpointId: n.EndpointID,
    mac: n.MacAddress ?? '',
    ipv4: n.IPAddress || undefined,
    ipv6: n.GlobalIPv6Address || undefined,
    profiles: withDefaultProfile(profilesFromLabels(labelsOf(c))),
  });
}
