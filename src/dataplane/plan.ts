import ipaddr from 'ipaddr.js';
import { GATEWAY_V4, GATEWAY_V6, HOST_IF_PREFIX, HOST_VETH_MAC } from '../names';

// Pure: what the host must look like for one container endpoint, as `ip -batch`
// lines and /proc/sys writes. No effects here; ./host-dataplane.ts applies it.

export interface EndpointSpec {
  endpointId: string;
  hostIf: string;
  peerIf: string;
  /** MAC of the container end. */
  containerMac: string;
  /** Container addresses without prefix length. */
  ipv4?: string;
  ipv6?: string;
  mtu?: number;
  /** Written as the host end's alias: tells this node's links from another node's on a shared host. */
  owner?: string;
}

export interface Sysctl {
  /** Path under /proc/sys, e.g. net/ipv4/conf/cali123/proxy_arp. */
  key: string;
  value: string;
}

export interface EndpointPlan {
  /** One `ip -batch` line each; all must succeed. */
  commands: string[];
  /** Written once the links exist; before the container's process can send a packet. */
  sysctls: Sysctl[];
}

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function checkIfName(name: string): void {
  // `ip` exits (killing the shared batch process) on a malformed argument, so
  // everything that reaches a command line is checked here first.
  if (!IFNAME.test(name)) throw new Error(`invalid interface name "${name}"`);
}

function canonical(addr: string, family: 'ipv4' | 'ipv6'): string {
  if (!ipaddr.isValid(addr)) throw new Error(`invalid ${family === 'ipv4' ? 'IPv4' : 'IPv6'} address "${addr}"`);
  const a = ipaddr.parse(addr);
  if (a.kind() !== family) throw new Error(`"${addr}" is not an ${family === 'ipv4' ? 'IPv4' : 'IPv6'} address`);
  return a.toString();
}

/**
 * Host side of one endpoint. The veth is made in the host namespace; Docker
 * moves the peer into the container and names it eth0 after Join. The /32
 * (/128) route is added while the host end is up but has no carrier yet: the
 * kernel accepts it (flagged linkdown) and uses it as soon as the container
 * end comes up, so the container is reachable at its first instruction.
 * Routing is /32 per container, no subnet on the link: every address of a
 * pool is usable and the container reaches everything through 169.254.1.1,
 * which the host answers by proxy ARP.
 */
export function planEndpoint(spec: EndpointSpec): EndpointPlan {
  checkIfName(spec.hostIf);
  checkIfName(spec.peerIf);
  const mac = spec.containerMac.toLowerCase();
  if (!MAC.test(mac)) throw new Error(`invalid MAC address "${spec.containerMac}"`);
  const mtu = spec.mtu !== undefined ? ` mtu ${Math.trunc(spec.mtu)}` : '';
  if (spec.mtu !== undefined && !(spec.mtu >= 68 && spec.mtu <= 65535)) throw new Error(`invalid MTU ${spec.mtu}`);
  const h = spec.hostIf;
  const commands = [
    `link add ${h}${mtu} address ${HOST_VETH_MAC} type veth peer name ${spec.peerIf}${mtu} address ${mac}`,
    ...(spec.owner ? [`link set ${h} alias ${checkOwner(spec.owner)}`] : []),
    `link set ${h} up`,
  ];
  const sysctls: Sysctl[] = [
    { key: `net/ipv4/conf/${h}/proxy_arp`, value: '1' },
    { key: `net/ipv4/neigh/${h}/proxy_delay`, value: '0' },
    { key: `net/ipv4/conf/${h}/forwarding`, value: '1' },
    // Never learn routes from a workload, even when it has no IPv6 address.
    { key: `net/ipv6/conf/${h}/accept_ra`, value: '0' },
  ];
  if (spec.ipv4) {
    commands.push(`route replace ${canonical(spec.ipv4, 'ipv4')}/32 dev ${h} scope link`);
  }
  if (spec.ipv6) {
    // The container's gateway is the host end's link-local. Added here, without
    // DAD, rather than waiting for the kernel to make it when carrier comes up
    // (after the process may already have sent its first neighbour solicitation).
    commands.push(`addr add ${GATEWAY_V6}/64 dev ${h} scope link nodad`);
    commands.push(`route replace ${canonical(spec.ipv6, 'ipv6')}/128 dev ${h}`);
    sysctls.push(
      { key: `net/ipv6/conf/${h}/accept_dad`, value: '0' },
      { key: `net/ipv6/conf/${h}/proxy_ndp`, value: '1' },
      { key: `net/ipv6/conf/${h}/forwarding`, value: '1' },
    );
  }
  return { commands, sysctls };
}

const OWNER = /^[A-Za-z0-9_.:-]{1,64}$/;

function checkOwner(owner: string): string {
  if (!OWNER.test(owner)) throw new Error(`invalid link owner tag "${owner}"`);
  return owner;
}

export interface HostLink {
  ifname: string;
  ifalias?: string;
}

/**
 * Host ends this owner made whose endpoint no longer exists: left when the
 * node was down while Docker tore a container down (Docker then moves the
 * container end back to the host, and the pair stays). Links of other owners
 * (another node sharing the host in a test lab) are never touched.
 */
export function planSweep(links: HostLink[], owner: string, keep: Set<string>): string[] {
  return links
    .filter((l) => l.ifname.startsWith(HOST_IF_PREFIX) && l.ifalias === owner && !keep.has(l.ifname))
    .map((l) => l.ifname);
}

/** Removing the host end removes the pair and every route through it. */
export function planEndpointRemoval(hostIf: string): string[] {
  checkIfName(hostIf);
  return [`link del ${hostIf}`];
}

/** Host-wide settings the dataplane needs before the first endpoint. */
export function hostSysctls(ipv6: boolean): Sysctl[] {
  const s: Sysctl[] = [{ key: 'net/ipv4/ip_forward', value: '1' }];
  if (ipv6) s.push({ key: 'net/ipv6/conf/all/forwarding', value: '1' });
  return s;
}

/** True when an `ip` error means the thing to delete was already gone. */
export function isAlreadyGone(message: string): boolean {
  return /Cannot find device|does not exist|No such device/i.test(message);
}

/**
 * A host route to the gateway address, for hosts with none: proxy ARP needs
 * the target routed through some interface other than the asking one.
 */
export function gatewayRouteCommand(): string {
  return `route replace ${GATEWAY_V4}/32 dev lo scope link`;
}
