// Pure: what IP-in-IP wants on this host, from what the datastore says.
// A pool with IP-in-IP on (`pool add --ipip`, mode always or cross-subnet)
// sends its traffic to another host's blocks through tunl0, straight to that
// host's --ip (`via <ip> dev tunl0 onlink`): the network between the hosts
// sees only packets between host addresses (protocol 4). In cross-subnet
// mode only hosts whose --ip lies outside this host's own subnet (the subnet
// of the interface holding this host's --ip) are tunnelled to; hosts on the
// same subnet are reached natively, by the routes BIRD installs.
// docs/ipip.md explains the choice of the node programming these routes.
import { BITS, cidrContains, parseAddress, parseCidr } from '../address/cidr';
import { narrowestPool } from '../address/pools';
import type { HostRoutes } from '../bgp/types';
import type { Host } from '../datastore/host-store';
import type { IpipMode, Pool } from '../datastore/pool-store';

/** IPv4 header the tunnel adds to every packet. */
export const IPIP_OVERHEAD = 20;

/** The interface that holds this host's --ip: its subnet and MTU (the underlay). */
export interface Underlay {
  dev: string;
  /** Canonical CIDR of the interface's subnet, e.g. 10.220.1.0/24. */
  subnet: string;
  mtu?: number;
}

export interface TunnelInput {
  hostname: string;
  /** Every registered host (this one included). */
  hosts: Iterable<Host>;
  pools: Iterable<Pool>;
  /** What each host holds (blocks affine to it, addresses it borrowed), by host name. */
  hostRoutes: Readonly<Record<string, HostRoutes>>;
  /** Undefined when it could not be found: cross-subnet then treats every other host as remote. */
  underlay?: Underlay;
}

/** One route through the tunnel: a remote host's block (or borrowed /32) via that host's --ip. */
export interface TunnelRoute {
  dst: string;
  via: string;
  host: string;
}

export interface TunnelPlan {
  /** Some IPv4 pool has IP-in-IP on: tunl0 up, the protocol-4 rule in place. */
  enabled: boolean;
  /** tunl0's MTU: the underlay's minus IPIP_OVERHEAD (undefined when the underlay's is unknown). */
  mtu?: number;
  /** Sorted by destination. */
  routes: TunnelRoute[];
  /** The IP-in-IP pools (canonical CIDRs, sorted). */
  ipipPools: string[];
  /** Every registered host's IPv4 address (sorted): the sources protocol 4 is accepted from. */
  nodeAddresses: string[];
}

export function tunnelMtu(underlayMtu: number | undefined): number | undefined {
  return underlayMtu !== undefined && underlayMtu - IPIP_OVERHEAD >= 68 ? underlayMtu - IPIP_OVERHEAD : undefined;
}

/** Whether traffic to a host at `hostIp` goes through the tunnel under `mode`. */
export function tunnelledTo(mode: IpipMode, hostIp: string, underlay: Pick<Underlay, 'subnet'> | undefined): boolean {
  if (mode === 'always' || !underlay) return true;
  const a = parseAddress(hostIp);
  return !cidrContains(parseCidr(underlay.subnet), a.family, a.value);
}

function cmpCidr(a: string, b: string): number {
  const x = parseCidr(a);
  const y = parseCidr(b);
  return x.network < y.network ? -1 : x.network > y.network ? 1 : x.prefix - y.prefix;
}

export function tunnelPlan(input: TunnelInput): TunnelPlan {
  const pools = [...input.pools].filter((p) => p.family === 4);
  const ipip = pools.filter((p) => p.ipip);
  const hosts = [...input.hosts];
  const nodeAddresses = [...new Set(hosts.map((h) => h.ip).filter((ip): ip is string => !!ip))].sort((a, b) => cmpCidr(`${a}/32`, `${b}/32`));
  const plan: TunnelPlan = { enabled: ipip.length > 0, routes: [], ipipPools: ipip.map((p) => p.cidr).sort(cmpCidr), nodeAddresses };
  if (!plan.enabled) return plan;
  plan.mtu = tunnelMtu(input.underlay?.mtu);
  const seen = new Set<string>();
  for (const h of hosts) {
    if (h.host === input.hostname || !h.ip) continue;
    const held = input.hostRoutes[h.host];
    if (!held) continue;
    for (const dst of [...held.blocks, ...held.borrowed]) {
      const c = parseCidr(dst);
      if (c.family !== 4 || seen.has(c.text)) continue;
      // The narrowest pool decides (a pool without IP-in-IP nested in one with it is routed natively).
      const pool = narrowestPool(c, pools);
      if (!pool?.ipipMode || !tunnelledTo(pool.ipipMode, h.ip, input.underlay)) continue;
      seen.add(c.text);
      plan.routes.push({ dst: c.text, via: h.ip, host: h.host });
    }
  }
  plan.routes.sort((a, b) => cmpCidr(a.dst, b.dst));
  return plan;
}

/**
 * The MTU of a new workload veth: the tunnel's when the address lies in an
 * IP-in-IP pool (a full-size write from the container then fits the tunnel
 * without fragmentation), else undefined (the dataplane's default, the uplink's).
 */
export function endpointMtu(ipv4: string | undefined, pools: Iterable<Pool>, underlayMtu: number | undefined): number | undefined {
  if (!ipv4) return undefined;
  const a = parseAddress(ipv4);
  const pool = narrowestPool({ family: a.family, network: a.value, prefix: BITS[a.family], text: '' }, [...pools]);
  return pool?.ipip ? tunnelMtu(underlayMtu) : undefined;
}

interface IpAddrJson {
  ifname: string;
  mtu?: number;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** The interface holding `ip`, from `ip -j -4 addr show`; undefined when no interface has it. */
export function underlayOf(addrJson: string, ip: string): Underlay | undefined {
  const want = parseAddress(ip);
  for (const link of JSON.parse(addrJson || '[]') as IpAddrJson[]) {
    for (const a of link.addr_info ?? []) {
      if (a.family !== 'inet') continue;
      let v;
      try {
        v = parseAddress(a.local);
      } catch {
        continue;
      }
      if (v.value !== want.value || v.family !== want.family) continue;
      const subnet = parseCidr(`${a.local}/${a.prefixlen}`).text;
      const u: Underlay = { dev: link.ifname, subnet };
      if (link.mtu !== undefined) u.mtu = link.mtu;
      return u;
    }
  }
  return undefined;
}

/** A route as `ip -j route show` prints it. */
export interface KernelRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
}

/** Canonical CIDR of a route's dst (`ip -j` prints a /32 without its length). */
export function routeDst(dst: string): string {
  return parseCidr(dst.includes('/') ? dst : `${dst}/32`).text;
}

/**
 * `ip -batch` lines that take the kernel from `current` (the routes of our
 * protocol, read back) to the plan's routes: replace every wanted route that
 * is missing or different, delete ours that are no longer wanted.
 */
export function routeCommands(plan: Pick<TunnelPlan, 'routes'>, current: KernelRoute[], device: string, proto: number): string[] {
  const have = new Map(current.map((r) => [routeDst(r.dst), r]));
  const out: string[] = [];
  const wanted = new Set<string>();
  for (const r of plan.routes) {
    wanted.add(r.dst);
    const k = have.get(r.dst);
    if (k && k.gateway === r.via && k.dev === device && (k.flags ?? []).includes('onlink')) continue;
    out.push(`route replace ${r.dst} via ${r.via} dev ${device} onlink proto ${proto}`);
  }
  for (const dst of have.keys()) if (!wanted.has(dst)) out.push(`route del ${dst} proto ${proto}`);
  return out;
}
