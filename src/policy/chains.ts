// The pieces the policy compiler builds its chains from (pure): the
// dispatch trees, an endpoint's chains, a profile's chains, the top chains
// hooked into FORWARD/INPUT/OUTPUT, and the set member spelling. Both
// compilers (./compile.ts, the whole state; ./compiler.ts, kept up to date
// across changes) use these, so their output is the same text.
import type { Endpoint } from '../datastore/endpoint-store';
import type { Profile } from '../datastore/profile-store';
import type { RuleValue } from '../datastore/schemas';
import type { DesiredChain, DesiredState, IpFamily } from '../dataplane/applier/types';
import { HOST_IF_PREFIX } from '../names/interfaces';
import { parseCidr, type Cidr } from '../address/cidr';
import {
  fromEndpointDispatchChain,
  fromEndpointChain,
  hostToEndpointDispatchChain,
  policyForwardChain,
  policyInputChain,
  policyOutputChain,
  profileInboundChain,
  profileOutboundChain,
  profileToHostChain,
  toEndpointChain,
  toEndpointDispatchChain,
} from '../names/kernel';
import { ruleMatches, ruleTags } from './rules';

const WL = `${HOST_IF_PREFIX}+`;
/** ICMPv6 a workload cannot live without (MLD 130-132, RS 133, RA 134, NS 135, NA 136). */
const ND_TO_WORKLOAD = [130, 131, 132, 134, 135, 136];
const ND_FROM_WORKLOAD = [130, 131, 132, 133, 135, 136];

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function comment(text: string): string {
  return `-m comment --comment "${text}"`;
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

export function nets(ep: Endpoint, family: IpFamily): string[] {
  return (family === 4 ? ep.ipv4_nets : ep.ipv6_nets).map((n) => cidr(n).text).sort();
}

/** A member of a hash:net set as `ipset list` prints it: a host address without its /32 or /128. */
export function setMember(net: string): string {
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
export function dispatchTree(
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

export function fromEndpoint(ep: Endpoint, family: IpFamily, profiles: Map<string, Profile>, mark: number, hostServices: boolean): DesiredChain {
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

export function toEndpoint(ep: Endpoint, family: IpFamily, profiles: Map<string, Profile>, mark: number): DesiredChain {
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
export function topChains(hostReaches: boolean, recheck: number, toHostMark: number | undefined): DesiredChain[] {
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

/** The hooks of the policy: its three top chains, first in FORWARD, INPUT and OUTPUT. */
export function policyHooks(): DesiredState['v4']['hooks'] {
  return [
    { table: 'filter', chain: 'FORWARD', rule: `-j ${policyForwardChain()}`, position: 'top' },
    { table: 'filter', chain: 'INPUT', rule: `-j ${policyInputChain()}`, position: 'top' },
    { table: 'filter', chain: 'OUTPUT', rule: `-j ${policyOutputChain()}`, position: 'top' },
  ];
}

/** One profile's chains in one family, and the tags its rules there name . */
export function profileFamily(p: Profile, family: IpFamily, mark: number, toHostMark: number | undefined): { chains: DesiredChain[]; tags: string[] } {
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

export function byName<T extends { name: string }>(a: T, b: T): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export function compareMembers(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sameRules(a: string[], b: string[]): boolean {
  return a === b || (a.length === b.length && a.every((x, i) => x === b[i]));
}
