// Pure: what a Docker container's view (inspect or list) says about its
// Calico endpoint, in the 2015 endpoint's terms. Used by the start
// interceptor, the reconciler and `calicoctl container add`.
import { HANDLE_LABEL, calicoNetworkName } from '../names';
import { profilesFromLabels } from '../proxy/interceptors/calico-request';

/** One workload endpoint as this node records it (host, container, veth, addresses, profiles). */
export interface EndpointRecord {
  host: string;
  /** Always 'docker' (the 2015 orchestrator id). */
  orchestrator: 'docker';
  /** Full container id. */
  workloadId: string;
  /** Docker's endpoint id on the calico network (64 hex). */
  endpointId: string;
  /** Host-side veth name (cali + 11 hex of the endpoint id). */
  ifName: string;
  /** Container-side MAC. */
  mac: string;
  ipv4Nets: string[];
  ipv6Nets: string[];
  profiles: string[];
  state: 'active' | 'inactive';
}

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

/** The container's endpoint on the calico network, if it has one with an address. */
export function calicoNetworkOf(c: ContainerView): NetworkView | undefined {
  const n = c.NetworkSettings?.Networks?.[calicoNetworkName()];
  if (!n || !n.EndpointID || (!n.IPAddress && !n.GlobalIPv6Address)) return undefined;
  return n;
}

/**
 * The endpoint record of a running container on the calico network, or
 * undefined when it has none (not on the network, or not started).
 */
export function endpointFromContainer(
  c: ContainerView,
  host: string,
  ifNameFor: (endpointId: string) => string,
): EndpointRecord | undefined {
  const n = calicoNetworkOf(c);
  if (!n || !n.EndpointID) return undefined;
  return {
    host,
    orchestrator: 'docker',
    workloadId: c.Id,
    endpointId: n.EndpointID,
    ifName: ifNameFor(n.EndpointID),
    mac: n.MacAddress ?? '',
    ipv4Nets: n.IPAddress ? [`${n.IPAddress}/32`] : [],
    ipv6Nets: n.GlobalIPv6Address ? [`${n.GlobalIPv6Address}/128`] : [],
    profiles: profilesFromLabels(labelsOf(c)),
    state: 'active',
  };
}

/** Whether two records describe the same plumbing (so a rewrite can be skipped). */
export function sameEndpoint(a: EndpointRecord, b: EndpointRecord): boolean {
  return (
    a.endpointId === b.endpointId &&
    a.ifName === b.ifName &&
    a.mac === b.mac &&
    a.state === b.state &&
    a.ipv4Nets.join() === b.ipv4Nets.join() &&
    a.ipv6Nets.join() === b.ipv6Nets.join() &&
    a.profiles.join() === b.profiles.join()
  );
}
