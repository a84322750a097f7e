// The policy compiler (felix's calculation, pure): this host's endpoints,
// every host's endpoints and the profiles in; the complete desired filter
// chains, hooks and tag ipsets of both address families out, for the one
// kernel applier. Same input, same text: everything is sorted, so the
// applier's diff finds nothing to do when nothing changed. The chains are
// built from ./chains.ts; ./compiler.ts keeps the same output up to date
// across changes at the cost of the change.
// docs/policy.md draws the chains and a packet's path through them.
import type { Endpoint } from '../datastore/endpoint-store';
import type { Profile } from '../datastore/profile-store';
import type { DesiredChain, DesiredIpset, DesiredState, IpFamily } from '../dataplane/applier/types';
import { classIpset, endpointClassKey, tagIpset } from '../names/kernel';
import { byName, classMembers, compareMembers, dispatchChains, endpointClass, fromClass, policyHooks, profileFamily, setMember, toClass, topChains } from './chains';

export { toHostRules } from './chains';

export interface PolicyOptions {
  /** The host may always open connections to its own containers (default true); else their inbound rules decide. */
  hostReachesContainers?: boolean;
  /**
   * The packet-mark bit the profile chains use to say "no rule of mine
   * matched" (default 0x10000, inside the 0xffff0000 range Calico keeps
   * clear of Docker and kube-proxy, which use 0x4000/0x8000).
   */
  noMatchMark?: number;
  /**
   * The conntrack-mark bit that says "this flow's policy was narrowed since
   * it was accepted: check it again" (default 0x20000). Set on a narrowed
   * endpoint's flows by the policy component (conntrack -U); cleared when
   * the flow's next original-direction packet passes the rules again.
   */
  recheckMark?: number;
  /**
   * Traffic from a container to an address of its own host (INPUT; etcd,
   * BIRD, the node's ports, anything listening there). `drop` (default):
   * only an outbound allow rule that names a `dst_net` opens it (the default
   * profile's allow-all does not); nothing else but IPv6 neighbour discovery
   * passes. `accept`: the 2015 behaviour — the container's outbound rules
   * decide as for any destination, and DNS and DHCP to the host pass ahead
   * of them. Calico's DefaultEndpointToHostAction, with its default.
   */
  endpointToHostAction?: EndpointToHostAction;
  /**
   * The packet-mark bit that says "this packet is for this host" while it
   * runs the endpoint's outbound rules from INPUT (default 0x40000); cleared
   * before the packet is accepted.
   */
  toHostMark?: number;
}

export type EndpointToHostAction = 'drop' | 'accept';
export const ENDPOINT_TO_HOST_ACTIONS: readonly EndpointToHostAction[] = ['drop', 'accept'];

export interface PolicyInput {
  /** This host's name: only its endpoints get chains. */
  host: string;
  /** Every endpoint on every host: tag sets hold all their addresses. Local ones are those with `host` equal to ours. */
  endpoints: Endpoint[];
  profiles: Profile[];
  options?: PolicyOptions;
}

export const DEFAULT_NO_MATCH_MARK = 0x10000;
export const DEFAULT_RECHECK_MARK = 0x20000;
export const DEFAULT_TO_HOST_MARK = 0x40000;
/** Local endpoints that get chains: this host's, active, sorted by interface (the dispatch order). */
export function programmedEndpoints(input: PolicyInput): Endpoint[] {
  const seen = new Set<string>();
  return input.endpoints
    .filter((e) => e.host === input.host && e.state === 'active')
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.endpointId < b.endpointId ? -1 : 1))
    .filter((e) => {
      // Two records for one interface (a stale one left over): the first by id wins, deterministically.
      if (seen.has(e.name)) return false;
      seen.add(e.name);
      return true;
    });
}

function compileFamily(input: PolicyInput, family: IpFamily): DesiredState['v4'] {
  const mark = input.options?.noMatchMark ?? DEFAULT_NO_MATCH_MARK;
  const hostReaches = input.options?.hostReachesContainers ?? true;
  const hostServices = (input.options?.endpointToHostAction ?? 'drop') === 'accept';
  const toHostMark = hostServices ? undefined : input.options?.toHostMark ?? DEFAULT_TO_HOST_MARK;
  const profiles = new Map(input.profiles.map((p) => [p.name, p]));
  const local = programmedEndpoints(input);

  // Endpoint classes (the same stored profiles in the same order): their chains, and their sets of (address, interface).
  const classes = new Map<string, { ids: string[]; members: string[] }>();
  for (const ep of local) {
    const ids = endpointClass(ep, profiles);
    const key = endpointClassKey(ids);
    let c = classes.get(key);
    if (!c) classes.set(key, (c = { ids, members: [] }));
    c.members.push(...classMembers(ep, family));
  }
  const keys = [...classes.keys()].sort(compareMembers);
  const chains: DesiredChain[] = [...topChains(hostReaches, input.options?.recheckMark ?? DEFAULT_RECHECK_MARK, toHostMark)];
  chains.push(...dispatchChains(family, keys, hostReaches, hostServices));
  for (const key of keys) chains.push(fromClass(classes.get(key)!.ids, mark, hostServices), toClass(classes.get(key)!.ids, mark));

  // Profile chains only for profiles a programmed endpoint uses; tag sets only for tags their rules name.
  const used = [...new Set(local.flatMap((ep) => ep.profile_ids.filter((id) => profiles.has(id))))].sort();
  const tags = new Set<string>();
  for (const id of used) {
    const made = profileFamily(profiles.get(id)!, family, mark, toHostMark);
    chains.push(...made.chains);
    made.tags.forEach((t) => tags.add(t));
  }

  const members = allTagMembers(input, tags, family);
  const ipsets: DesiredIpset[] = [
    ...keys.map((key) => ({ name: classIpset(family, key), type: 'hash:net,iface' as const, family, members: classes.get(key)!.members.sort(compareMembers) })),
    ...[...tags].sort().map((tag) => ({ name: tagIpset(family, tag), type: 'hash:net' as const, family, members: members.get(tag)! })),
  ];

  return {
    chains: chains.sort(byName),
    hooks: policyHooks(),
    ipsets,
  };
}

/** Addresses (in `family`) of every active endpoint, on any host, with a profile carrying `tag`. */
export function tagMembers(input: Pick<PolicyInput, 'endpoints' | 'profiles'>, tag: string, family: IpFamily): string[] {
  return allTagMembers(input, new Set([tag]), family).get(tag)!;
}

/** The members of each wanted tag in one pass over the endpoints. */
function allTagMembers(input: Pick<PolicyInput, 'endpoints' | 'profiles'>, wanted: Set<string>, family: IpFamily): Map<string, string[]> {
  const tagsOf = new Map(input.profiles.map((p) => [p.name, p.tags.filter((t) => wanted.has(t))]));
  const members = new Map([...wanted].map((t) => [t, new Set<string>()]));
  for (const ep of input.endpoints) {
    if (ep.state !== 'active') continue;
    const tags = new Set(ep.profile_ids.flatMap((id) => tagsOf.get(id) ?? []));
    if (!tags.size) continue;
    const addrs = (family === 4 ? ep.ipv4_nets : ep.ipv6_nets).map(setMember);
    for (const t of tags) for (const a of addrs) members.get(t)!.add(a);
  }
  return new Map([...members].map(([t, m]) => [t, [...m].sort(compareMembers)]));
}

/** The whole policy of this host, both families. */
export function compilePolicy(input: PolicyInput): DesiredState {
  return { v4: compileFamily(input, 4), v6: compileFamily(input, 6) };
}
