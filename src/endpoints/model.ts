// The endpoint: one container's interface on the calico network, as every
// part of the node and every host's policy and BGP see it. One type, the
// 2015 endpoint JSON plus where it lives (host, container, endpoint id);
// src/datastore/endpoint-store.ts stores it under
// /calico/v1/host/<h>/workload/docker/<cid>/endpoint/<epid>. Pure.
import type { Endpoint } from '../datastore/endpoint-store';
import { DEFAULT_PROFILE } from '../datastore/profile-store';
import { GATEWAY_V4, GATEWAY_V6, hostIfName } from '../names';

export type { Endpoint };

/** The container-side interface name Docker gives the calico network's interface. */
const CONTAINER_IF = 'eth0';

export interface EndpointFacts {
  host: string;
  /** Full container id; '' while the plugin does not know whose endpoint it is. */
  containerId: string;
  /** Docker's endpoint id on the calico network. */
  endpointId: string;
  /** Container-side MAC. */
  mac: string;
  /** Container addresses without prefix length. */
  ipv4?: string;
  ipv6?: string;
  profiles: string[];
  state?: 'active' | 'inactive';
}

/** The endpoint of these facts: host-side veth `cali…`, /32 and /128 nets, the fixed gateways. */
export function makeEndpoint(f: EndpointFacts): Endpoint {
  return {
    host: f.host,
    containerId: f.containerId,
    endpointId: f.endpointId,
    state: f.state ?? 'active',
    name: hostIfName(f.endpointId),
    mac: f.mac.toLowerCase(),
    'container:if_name': CONTAINER_IF,
    profile_ids: [...f.profiles],
    ipv4_nets: f.ipv4 ? [`${f.ipv4}/32`] : [],
    ipv6_nets: f.ipv6 ? [`${f.ipv6}/128`] : [],
    ipv4_gateway: f.ipv4 ? GATEWAY_V4 : null,
    ipv6_gateway: f.ipv6 ? GATEWAY_V6 : null,
  };
}

/** The endpoint's addresses without prefix length. */
export function addressesOf(ep: Endpoint): { ipv4?: string; ipv6?: string } {
  return { ipv4: ep.ipv4_nets[0]?.split('/')[0], ipv6: ep.ipv6_nets[0]?.split('/')[0] };
}

/** Whether two endpoints describe the same plumbing and policy inputs (so a rewrite can be skipped). */
export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return (
    a.host === b.host &&
    a.containerId === b.containerId &&
    a.endpointId === b.endpointId &&
    a.name === b.name &&
    a.mac === b.mac &&
    a.state === b.state &&
    a.ipv4_nets.join() === b.ipv4_nets.join() &&
    a.ipv6_nets.join() === b.ipv6_nets.join() &&
    a.profile_ids.join() === b.profile_ids.join()
  );
}

/** A container started without CALICO_PROFILE joins the default profile (2015 dropped all its traffic). */
export function withDefaultProfile(profiles: string[]): string[] {
  return profiles.length ? profiles : [DEFAULT_PROFILE];
}
