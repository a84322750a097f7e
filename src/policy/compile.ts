// The policy compiler (felix's calculation, pure): this host's endpoints,
// every host's endpoints and the profiles in; the complete desired filter
// chains, hooks and tag ipsets of both address families out, for the one
// kernel applier. Same input, same text: everything is sorted, so the
// applier's diff finds nothing to do when nothing changed.
// docs/policy.md draws the chains and a packet's path through them.
import type { Endpoint } from '../datastore/endpoint-store';
import type { Profile } from '../datastore/profile-store';
import type { RuleValue } from '../datastore/schemas';
import type { DesiredChain, DesiredIpset, DesiredState, IpFamily } from '../dataplane/applier/types';
import { HOST_IF_PREFIX } from '../names/interfaces';
import { parseCidr, type Cidr } from '../address/cidr';
import {
  fromEndpointChain,
  fromEndpointDispatchChain,
  hostToEndpointDispatchChain,
  policyForwardChain,
  policyInputChain,
  policyOutputChain,
  profileInboundChain,
  profileOutboundChain,
  profileToHostChain,
  tagIpset,
  toEndpointChain,
  toEndpointDispatchChain,
} from '../names/kernel';
import { ruleMatches, ruleTags } from './rules';

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
const WL = `${HOST_IF_PREFIX}+`;
/** ICMPv6 a workload cannot live without (MLD 130-132, RS 133, RA 134, NS 135, NA 136). */
const ND_TO_WORKLOAD = [130, 131, 132, 134, 135, 136];
const ND_FROM_WORKLOAD = [130, 131, 132, 133, 135, 136];

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function comment(text: string): string {
  return `-m comment --comment "${text}"`;
}

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

// The same few thousand addresses are parsed on every compile: remember them (bounded).
const cidrCache = new Map<string, Cidr>();
function cidr(text: string): Cidr {
  let c = cidrCache.get(text);
  if (!c) {
    if (cidrCache.size > 100_000) cidrCache.clear();
    c = parseCidr(text);
    cidrCache.set(text, c);
  }
  return c;
}

function nets(ep: Endpoint, family: IpFamily): string[] {
  return (family === 4 ? ep.ipv4_nets : ep.ipv6_nets).map((n) => cidr(n).text).sort();
}

/** A member of a hash:net set as `ipset list` prints it: a host address without its /32 or /128. */
function setMember(net: string): string {
  const c = cidr(net);
  const host = c.prefix === (c.family === 4 ? 32 : 128);
  return host ? c.text.slice(0, c.text.indexOf('/')) : c.text;
}

/**
 * A two-level dispatch tree: the root sends each interface (grouped by the
 * character after `cali`) to a leaf chain, which sends it on with a goto to
 * its endpoint's chain; anything unmatched is dropped (fail closed). A
 * group of one is matched in the root directly.
 */
function dispatchTree(
  root: string,
  leafName: (bin: string) => string,
  dir: '-i' | '-o',
  endpoints: Endpoint[],
  target: (ep: Endpoint) => string,
  what: string,
): DesiredChain[] {
  const bins = new Map<string, Endpoint[]>();
  for (const ep of endpoints) {
    const bin = ep.name.charAt(HOST_IF_PREFIX.length);
    const list = bins.get(bin);
    if (list) list.push(ep);
    else bins.set(bin, [ep]);
  }
  const chains: DesiredChain[] = [];
  const rootRules: string[] = [];
  for (const [bin, eps] of [...bins.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (eps.length === 1) {
      rootRules.push(`${dir} ${eps[0]!.name} ${target(eps[0]!)}`);
      continue;
    }
    const leaf = leafName(bin);
    rootRules.push(`${dir} ${HOST_IF_PREFIX}${bin}+ -g ${leaf}`);
    chains.push({
      table: 'filter',
      name: leaf,
      rules: [...eps.map((ep) => `${dir} ${ep.name} ${target(ep)}`), `${comment(`Unknown ${what} interface`)} -j DROP`],
    });
  }
  rootRules.push(`${comment(`Unknown ${what} interface`)} -j DROP`);
  return [{ table: 'filter', name: root, rules: rootRules }, ...chains];
}

/** The profile-composition block of an endpoint chain: first allow wins, a deny drops, no match drops. */
function profileBlock(ep: Endpoint, profiles: Map<string, Profile>, chainOf: (p: string) => string, mark: number): string[] {
  const rules: string[] = [];
  for (const id of ep.profile_ids) {
    // A profile named but not (validly) stored matches nothing: the next one is tried, and no match drops.
    if (!profiles.has(id)) continue;
    rules.push(`-j MARK --set-xmark 0x0/${hex(mark)}`);
    rules.push(`-j ${chainOf(id)}`);
    rules.push(`-m mark --mark 0x0/${hex(mark)} ${comment(`Return if profile ${id} accepted`)} -j RETURN`);
  }
  return rules;
}

function fromEndpoint(ep: Endpoint, family: IpFamily, profiles: Map<string, Profile>, mark: number, hostServices: boolean): DesiredChain {
  const rules: string[] = [];
  // Neighbour discovery always (no IPv6 without it); DHCP to the host only
  // when containers may use the host's services (the 2015 accept behaviour).
  if (family === 6) rules.push(...ND_FROM_WORKLOAD.map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`));
  if (hostServices) rules.push(family === 4 ? '-p udp -m udp --sport 68 --dport 67 -j RETURN' : '-p udp -m udp --sport 546 --dport 547 -j RETURN');
  // Anti-spoof: the source MAC must be the endpoint's, and the source address one of its nets.
  rules.push(`-m mac ! --mac-source ${ep.mac.toLowerCase()} ${comment(`Anti-spoof DROP (endpoint ${ep.endpointId}): source MAC`)} -j DROP`);
  const own = nets(ep, family);
  if (own.length === 0) {
    rules.push(`${comment(`Anti-spoof DROP (endpoint ${ep.endpointId}): no IPv${family} address`)} -j DROP`);
  } else if (own.length === 1) {
    rules.push(`! -s ${own[0]} ${comment(`Anti-spoof DROP (endpoint ${ep.endpointId}): source address`)} -j DROP`);
  } else {
    // Several nets: the no-match bit is set, each own net clears it, a packet still carrying it is spoofed.
    rules.push(`-j MARK --set-xmark ${hex(mark)}/${hex(mark)}`);
    rules.push(...own.map((n) => `-s ${n} -j MARK --set-xmark 0x0/${hex(mark)}`));
    rules.push(`-m mark --mark ${hex(mark)}/${hex(mark)} ${comment(`Anti-spoof DROP (endpoint ${ep.endpointId}): source address`)} -j DROP`);
  }
  if (hostServices) {
    // DNS to this host itself (felix allowed it ahead of policy); forwarded DNS goes through the rules.
    rules.push('-p udp -m udp --dport 53 -m addrtype --dst-type LOCAL -j RETURN');
    rules.push('-p tcp -m tcp --dport 53 -m addrtype --dst-type LOCAL -j RETURN');
  }
  rules.push(...profileBlock(ep, profiles, profileOutboundChain, mark));
  rules.push(`${comment(`Default DROP if no profile allowed it (endpoint ${ep.endpointId})`)} -j DROP`);
  return { table: 'filter', name: fromEndpointChain(ep.name), rules };
}

function toEndpoint(ep: Endpoint, family: IpFamily, profiles: Map<string, Profile>, mark: number): DesiredChain {
  const rules: string[] = [];
  if (family === 6) rules.push(...ND_TO_WORKLOAD.map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`));
  rules.push(...profileBlock(ep, profiles, profileInboundChain, mark));
  rules.push(`${comment(`Default DROP if no profile allowed it (endpoint ${ep.endpointId})`)} -j DROP`);
  return { table: 'filter', name: toEndpointChain(ep.name), rules };
}

/**
 * A profile's rules in one direction: allow returns (mark bit clear), deny
 * drops, the end sets the no-match bit. `head` goes first (the outbound
 * chain's detour for traffic to this host).
 */
function profileChain(name: string, chain: string, rules: RuleValue[], family: IpFamily, mark: number, head: string[] = []): DesiredChain {
  const out: string[] = [...head];
  for (const r of rules) {
    const verdict = r.action === 'deny' ? '-j DROP' : '-j RETURN';
    for (const m of ruleMatches(r, family)) out.push(m ? `${m} ${verdict}` : verdict);
  }
  out.push(`${comment(`No rule of profile ${name} matched`)} -j MARK --set-xmark ${hex(mark)}/${hex(mark)}`);
  return { table: 'filter', name: chain, rules: out };
}

/**
 * The outbound rules that still apply to traffic to this host when the
 * endpoint-to-host action is drop: an allow opens the host only when it names
 * a destination net (and then only the host addresses inside it); an allow
 * without one (the default profile's allow-all, allow to a tag, allow tcp 80)
 * means "elsewhere". Deny rules stay: they deny the host too.
 */
export function toHostRules(outbound: RuleValue[]): RuleValue[] {
  return outbound.filter((r) => r.action === 'deny' || r.dst_net !== undefined);
}

/**
 * Established flows are accepted early, unless their conntrack entry carries
 * the recheck bit (their endpoint's policy was narrowed since): then a packet
 * in the flow's original direction goes through the rules as a new one would
 * (and clears the bit when they accept it), and a reply waits (is dropped)
 * until the original direction has passed again. So a connection that the
 * rules no longer allow stops, whichever side speaks, and one they still
 * allow goes on (see docs/policy.md, "Narrowed policy and open connections").
 */
function topChains(hostReaches: boolean, recheck: number, toHostMark: number | undefined): DesiredChain[] {
  const from = fromEndpointDispatchChain();
  const to = toEndpointDispatchChain();
  const r = hex(recheck);
  const early = (dir: '-i' | '-o') => [
    `${dir} ${WL} -m conntrack --ctstate INVALID -j DROP`,
    `${dir} ${WL} -m conntrack --ctstate RELATED,ESTABLISHED -m connmark --mark 0x0/${r} -j ACCEPT`,
    `${dir} ${WL} -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY ${comment('Policy narrowed: a reply waits for the original direction to pass again')} -j DROP`,
  ];
  const accept = (dir: '-i' | '-o', why: string) => [
    `${dir} ${WL} -m connmark --mark ${r}/${r} -j CONNMARK --set-xmark 0x0/${r}`,
    `${dir} ${WL} ${comment(why)} -j ACCEPT`,
  ];
  const forward = [
    ...early('-i'),
    ...early('-o'),
    `-i ${WL} -j ${from}`,
    `-o ${WL} -j ${to}`,
    ...accept('-i', 'Policy allowed it'),
    ...accept('-o', 'Policy allowed it'),
  ];
  // Drop: the packet carries the to-host bit through the endpoint's chain, so
  // its profiles' outbound chains detour to their host rules (cali-prh-*);
  // the bit is cleared before the accept.
  const input =
    toHostMark === undefined
      ? [...early('-i'), `-i ${WL} -j ${from}`, ...accept('-i', 'Policy allowed it')]
      : [
          ...early('-i'),
          `-i ${WL} ${comment('To this host: only rules naming a dst_net allow it')} -j MARK --set-xmark ${hex(toHostMark)}/${hex(toHostMark)}`,
          `-i ${WL} -j ${from}`,
          `-i ${WL} -j MARK --set-xmark 0x0/${hex(toHostMark)}`,
          ...accept('-i', 'A rule naming this host allowed it'),
        ];
  const output = [
    ...early('-o'),
    hostReaches ? `-o ${WL} -j ${hostToEndpointDispatchChain()}` : `-o ${WL} -j ${to}`,
    ...accept('-o', hostReaches ? 'The host reaches its containers' : 'Policy allowed it'),
  ];
  return [
    { table: 'filter', name: policyForwardChain(), rules: forward },
    { table: 'filter', name: policyInputChain(), rules: input },
    { table: 'filter', name: policyOutputChain(), rules: output },
  ];
}

function byName<T extends { name: string }>(a: T, b: T): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function compileFamily(input: PolicyInput, family: IpFamily): DesiredState['v4'] {
  const mark = input.options?.noMatchMark ?? DEFAULT_NO_MATCH_MARK;
  const hostReaches = input.options?.hostReachesContainers ?? true;
  const hostServices = (input.options?.endpointToHostAction ?? 'drop') === 'accept';
  const toHostMark = hostServices ? undefined : input.options?.toHostMark ?? DEFAULT_TO_HOST_MARK;
  const profiles = new Map(input.profiles.map((p) => [p.name, p]));
  const local = programmedEndpoints(input);

  const chains: DesiredChain[] = [...topChains(hostReaches, input.options?.recheckMark ?? DEFAULT_RECHECK_MARK, toHostMark)];
  chains.push(...dispatchTree(fromEndpointDispatchChain(), fromEndpointDispatchChain, '-i', local, (ep) => `-g ${fromEndpointChain(ep.name)}`, 'source'));
  chains.push(...dispatchTree(toEndpointDispatchChain(), toEndpointDispatchChain, '-o', local, (ep) => `-g ${toEndpointChain(ep.name)}`, 'destination'));
  if (hostReaches) {
    chains.push(...dispatchTree(hostToEndpointDispatchChain(), hostToEndpointDispatchChain, '-o', local, () => '-j RETURN', 'destination'));
  }
  for (const ep of local) {
    chains.push(fromEndpoint(ep, family, profiles, mark, hostServices), toEndpoint(ep, family, profiles, mark));
  }

  // Profile chains only for profiles a programmed endpoint uses; tag sets only for tags their rules name.
  const used = [...new Set(local.flatMap((ep) => ep.profile_ids.filter((id) => profiles.has(id))))].sort();
  const tags = new Set<string>();
  for (const id of used) {
    const p = profiles.get(id)!;
    const inbound = p.rules.inbound_rules.filter((r) => ruleMatches(r, family).length);
    const outbound = p.rules.outbound_rules.filter((r) => ruleMatches(r, family).length);
    for (const r of [...inbound, ...outbound]) ruleTags(r).forEach((t) => tags.add(t));
    chains.push(profileChain(id, profileInboundChain(id), p.rules.inbound_rules, family, mark));
    // Traffic to this host detours to the host rules, when they differ (a profile without an allow-all-ish rule needs none).
    const hostRules = toHostMark === undefined ? p.rules.outbound_rules : toHostRules(p.rules.outbound_rules);
    const detour = hostRules.length !== p.rules.outbound_rules.length;
    const head = detour ? [`-m mark --mark ${hex(toHostMark!)}/${hex(toHostMark!)} -g ${profileToHostChain(id)}`] : [];
    chains.push(profileChain(id, profileOutboundChain(id), p.rules.outbound_rules, family, mark, head));
    if (detour) chains.push(profileChain(id, profileToHostChain(id), hostRules, family, mark));
  }

  const members = allTagMembers(input, tags, family);
  const ipsets: DesiredIpset[] = [...tags].sort().map((tag) => ({
    name: tagIpset(family, tag),
    type: 'hash:net',
    family,
    members: members.get(tag)!,
  }));

  return {
    chains: chains.sort(byName),
    hooks: [
      { table: 'filter', chain: 'FORWARD', rule: `-j ${policyForwardChain()}`, position: 'top' },
      { table: 'filter', chain: 'INPUT', rule: `-j ${policyInputChain()}`, position: 'top' },
      { table: 'filter', chain: 'OUTPUT', rule: `-j ${policyOutputChain()}`, position: 'top' },
    ],
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

function compareMembers(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The whole policy of this host, both families. */
export function compilePolicy(input: PolicyInput): DesiredState {
  return { v4: compileFamily(input, 4), v6: compileFamily(input, 6) };
}

type FamilyChains = { 4: DesiredChain[]; 6: DesiredChain[] };

/**
 * The same compilation as compilePolicy, kept up to date across calls so
 * that a change costs what it changes (pure; no I/O). Remembered between
 * calls, by object (the syncer hands the same Endpoint and Profile objects
 * again while they are unchanged):
 * - each local endpoint's chains (anew when its record or the set of its
 *   profiles that exist changes),
 * - each profile's chains and the tags its rules name,
 * - every tag's members, as counts updated by the endpoints that came,
 *   went or changed (and those of a profile whose tags changed),
 * - the output objects themselves: an unchanged chain or set is the same
 *   object as last time, which the applier and the narrowing check compare
 *   by reference instead of by content.
 * A scan that looks at each endpoint object once remains (which are new?);
 * all other work is per change. Same input, same output as compilePolicy
 * (test/unit/policy-incremental.test.ts).
 */
export class PolicyCompiler {
  private optionsKey?: string;
  private endpointChains = new WeakMap<Endpoint, { sig: string; chains: FamilyChains }>();
  private profileChains = new WeakMap<Profile, { 4: { chains: DesiredChain[]; tags: string[] }; 6: { chains: DesiredChain[]; tags: string[] } }>();
  /** Last output's chains and sets by name, per family: computed chains equal to one of them are replaced by it. */
  private lastChains: { 4: Map<string, DesiredChain>; 6: Map<string, DesiredChain> } = { 4: new Map(), 6: new Map() };
  private lastSets: { 4: Map<string, DesiredIpset>; 6: Map<string, DesiredIpset> } = { 4: new Map(), 6: new Map() };
  /** Tag membership: every active endpoint's contribution, and per family tag -> member -> how many endpoints give it. */
  private contributions = new Map<Endpoint, { tags: string[]; 4: string[]; 6: string[] }>();
  private counts: { 4: Map<string, Map<string, number>>; 6: Map<string, Map<string, number>> } = { 4: new Map(), 6: new Map() };
  private dirtyTags = new Set<string>();
  private profilesSeen = new Map<string, Profile>();
  private byProfile = new Map<string, Set<Endpoint>>();
  private dispatch: { 4?: { names: string; hostReaches: boolean; chains: DesiredChain[] }; 6?: { names: string; hostReaches: boolean; chains: DesiredChain[] } } = {};

  compile(input: PolicyInput): DesiredState {
    const optionsKey = JSON.stringify(input.options ?? {});
    if (optionsKey !== this.optionsKey) this.reset(optionsKey);
    const profiles = new Map(input.profiles.map((p) => [p.name, p]));
    this.updateMembership(input.endpoints, profiles);
    const local = programmedEndpoints(input);
    const out = { v4: this.family(input, local, profiles, 4), v6: this.family(input, local, profiles, 6) };
    this.dirtyTags.clear();
    return out;
  }

  private reset(optionsKey: string): void {
    this.optionsKey = optionsKey;
    this.endpointChains = new WeakMap();
    this.profileChains = new WeakMap();
  }

  /** Tag members follow the endpoints that are new, gone or in a profile whose tags changed. */
  private updateMembership(endpoints: Endpoint[], profiles: Map<string, Profile>): void {
    const changedProfiles = new Set<string>();
    for (const [name, p] of profiles) {
      const was = this.profilesSeen.get(name);
      if (was !== p && (!was || was.tags.join('\n') !== p.tags.join('\n'))) changedProfiles.add(name);
    }
    for (const name of this.profilesSeen.keys()) if (!profiles.has(name)) changedProfiles.add(name);
    this.profilesSeen = new Map(profiles);
    const now = new Set(endpoints);
    const redo = new Set<Endpoint>();
    for (const ep of this.contributions.keys()) if (!now.has(ep)) this.drop(ep);
    for (const name of changedProfiles) for (const ep of this.byProfile.get(name) ?? []) if (now.has(ep)) redo.add(ep);
    for (const ep of endpoints) if (!this.contributions.has(ep)) redo.add(ep);
    for (const ep of redo) {
      this.drop(ep);
      this.add(ep, profiles);
    }
  }

  private add(ep: Endpoint, profiles: Map<string, Profile>): void {
    const tags = ep.state === 'active' ? [...new Set(ep.profile_ids.flatMap((id) => profiles.get(id)?.tags ?? []))] : [];
    const c = { tags, 4: tags.length ? [...new Set(ep.ipv4_nets.map(setMember))] : [], 6: tags.length ? [...new Set(ep.ipv6_nets.map(setMember))] : [] };
    this.contributions.set(ep, c);
    for (const id of ep.profile_ids) {
      let s = this.byProfile.get(id);
      if (!s) this.byProfile.set(id, (s = new Set()));
      s.add(ep);
    }
    this.count(c, 1);
  }

  private drop(ep: Endpoint): void {
    const c = this.contributions.get(ep);
    if (!c) return;
    this.contributions.delete(ep);
    for (const id of ep.profile_ids) {
      const s = this.byProfile.get(id);
      s?.delete(ep);
      if (s && !s.size) this.byProfile.delete(id);
    }
    this.count(c, -1);
  }

  private count(c: { tags: string[]; 4: string[]; 6: string[] }, by: 1 | -1): void {
    for (const v of [4, 6] as const) {
      for (const tag of c.tags) {
        let m = this.counts[v].get(tag);
        if (!m) this.counts[v].set(tag, (m = new Map()));
        for (const a of c[v]) {
          const n = (m.get(a) ?? 0) + by;
          if (n > 0) m.set(a, n);
          else m.delete(a);
        }
        if (!m.size) this.counts[v].delete(tag);
        if (c[v].length) this.dirtyTags.add(tag);
      }
    }
  }

  private family(input: PolicyInput, local: Endpoint[], profiles: Map<string, Profile>, family: IpFamily): DesiredState['v4'] {
    const mark = input.options?.noMatchMark ?? DEFAULT_NO_MATCH_MARK;
    const hostReaches = input.options?.hostReachesContainers ?? true;
    const hostServices = (input.options?.endpointToHostAction ?? 'drop') === 'accept';
    const toHostMark = hostServices ? undefined : input.options?.toHostMark ?? DEFAULT_TO_HOST_MARK;
    const last = this.lastChains[family];
    const next = new Map<string, DesiredChain>();
    const keep = (c: DesiredChain) => {
      const was = last.get(c.name);
      next.set(c.name, was && sameRules(was.rules, c.rules) ? was : c);
    };
    topChains(hostReaches, input.options?.recheckMark ?? DEFAULT_RECHECK_MARK, toHostMark).forEach(keep);
    // The dispatch chains depend on the local endpoints' names only: the same records in the same order, the same chains.
    const names = local.map((ep) => ep.name).join(' ');
    let tree = this.dispatch[family];
    if (!tree || tree.names !== names || tree.hostReaches !== hostReaches) {
      const chains = [
        ...dispatchTree(fromEndpointDispatchChain(), fromEndpointDispatchChain, '-i', local, (ep) => `-g ${fromEndpointChain(ep.name)}`, 'source'),
        ...dispatchTree(toEndpointDispatchChain(), toEndpointDispatchChain, '-o', local, (ep) => `-g ${toEndpointChain(ep.name)}`, 'destination'),
        ...(hostReaches ? dispatchTree(hostToEndpointDispatchChain(), hostToEndpointDispatchChain, '-o', local, () => '-j RETURN', 'destination') : []),
      ];
      tree = { names, hostReaches, chains };
      this.dispatch[family] = tree;
    }
    tree.chains.forEach(keep);
    for (const ep of local) {
      const sig = ep.profile_ids.map((id) => (profiles.has(id) ? '1' : '0')).join('');
      let memo = this.endpointChains.get(ep);
      if (!memo || memo.sig !== sig) {
        const chains = { 4: [] as DesiredChain[], 6: [] as DesiredChain[] };
        for (const v of [4, 6] as const) chains[v].push(fromEndpoint(ep, v, profiles, mark, hostServices), toEndpoint(ep, v, profiles, mark));
        memo = { sig, chains };
        this.endpointChains.set(ep, memo);
      }
      memo.chains[family].forEach(keep);
    }
    const used = [...new Set(local.flatMap((ep) => ep.profile_ids.filter((id) => profiles.has(id))))].sort();
    const tags = new Set<string>();
    for (const id of used) {
      const p = profiles.get(id)!;
      let memo = this.profileChains.get(p);
      if (!memo) {
        memo = { 4: profileFamily(p, 4, mark, toHostMark), 6: profileFamily(p, 6, mark, toHostMark) };
        this.profileChains.set(p, memo);
      }
      memo[family].chains.forEach(keep);
      memo[family].tags.forEach((t) => tags.add(t));
    }
    this.lastChains[family] = next;

    const lastSets = this.lastSets[family];
    const sets = new Map<string, DesiredIpset>();
    for (const tag of [...tags].sort()) {
      const name = tagIpset(family, tag);
      const was = lastSets.get(name);
      if (was && !this.dirtyTags.has(tag)) {
        sets.set(name, was);
        continue;
      }
      const members = [...(this.counts[family].get(tag)?.keys() ?? [])].sort(compareMembers);
      sets.set(name, was && sameRules(was.members, members) ? was : { name, type: 'hash:net', family, members });
    }
    this.lastSets[family] = sets;
    return {
      chains: [...next.values()].sort(byName),
      hooks: [
        { table: 'filter', chain: 'FORWARD', rule: `-j ${policyForwardChain()}`, position: 'top' },
        { table: 'filter', chain: 'INPUT', rule: `-j ${policyInputChain()}`, position: 'top' },
        { table: 'filter', chain: 'OUTPUT', rule: `-j ${policyOutputChain()}`, position: 'top' },
      ],
      ipsets: [...sets.values()],
    };
  }
}

/** One profile's chains in one family, and the tags its rules there name (as compileFamily makes them). */
function profileFamily(p: Profile, family: IpFamily, mark: number, toHostMark: number | undefined): { chains: DesiredChain[]; tags: string[] } {
  const id = p.name;
  const tags = new Set<string>();
  const inbound = p.rules.inbound_rules.filter((r) => ruleMatches(r, family).length);
  const outbound = p.rules.outbound_rules.filter((r) => ruleMatches(r, family).length);
  for (const r of [...inbound, ...outbound]) ruleTags(r).forEach((t) => tags.add(t));
  const chains = [profileChain(id, profileInboundChain(id), p.rules.inbound_rules, family, mark)];
  const hostRules = toHostMark === undefined ? p.rules.outbound_rules : toHostRules(p.rules.outbound_rules);
  const detour = hostRules.length !== p.rules.outbound_rules.length;
  const head = detour ? [`-m mark --mark ${hex(toHostMark!)}/${hex(toHostMark!)} -g ${profileToHostChain(id)}`] : [];
  chains.push(profileChain(id, profileOutboundChain(id), p.rules.outbound_rules, family, mark, head));
  if (detour) chains.push(profileChain(id, profileToHostChain(id), hostRules, family, mark));
  return { chains, tags: [...tags] };
}

function sameRules(a: string[], b: string[]): boolean {
  return a === b || (a.length === b.length && a.every((x, i) => x === b[i]));
}
