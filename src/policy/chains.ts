// The pieces the policy compiler builds its chains from (pure): the
// dispatch chains, an endpoint class's chains, a profile's chains, the top chains
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
  classIpset,
  endpointClassKey,
  fromClassChain,
  fromEndpointDispatchChain,
  hostToEndpointDispatchChain,
  policyForwardChain,
  policyInputChain,
  policyOutputChain,
  profileInboundChain,
  profileOutboundChain,
  profileToHostChain,
  toClassChain,
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

/** An endpoint's class: its profiles that are stored, in its order (one named but not stored matches nothing). */
export function endpointClass(ep: Endpoint, stored: { has(id: string): boolean }): string[] {
  return ep.profile_ids.filter((id) => stored.has(id));
}

/** One (address, interface) pair as its class's hash:net,iface set holds it: `<address or net>,<host-side interface>`. */
export function classPair(net: string, iface: string): string {
  return `${setMember(net)},${iface}`;
}

/** An endpoint's pairs in its class's dispatch set, one per own net of the family. */
export function classMembers(ep: Endpoint, family: IpFamily): string[] {
  return nets(ep, family).map((n) => classPair(n, ep.name));
}

/**
 * The dispatch chains of one family: a packet of a `cali*` interface goes to
 * the chains of the class whose set holds its (source address, incoming
 * interface) — from a workload — or (destination address, outgoing
 * interface) — to one. A source address that is not its interface's
 * endpoint's is spoofed, and dropped, as is anything of an interface no
 * endpoint of this host has (fail closed). Neighbour discovery (IPv6) and,
 * with host services, DHCP pass ahead of the sets: their addresses are
 * link-local or unspecified. `keys`: the classes, sorted.
 */
export function dispatchChains(family: IpFamily, keys: string[], hostReaches: boolean, hostServices: boolean): DesiredChain[] {
  const nd = (types: number[]) => (family === 6 ? types.map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`) : []);
  const dhcp = hostServices ? [family === 4 ? '-p udp -m udp --sport 68 --dport 67 -j RETURN' : '-p udp -m udp --sport 546 --dport 547 -j RETURN'] : [];
  const set = (key: string, dir: 'src' | 'dst') => `-m set --match-set ${classIpset(family, key)} ${dir},${dir}`;
  const chains: DesiredChain[] = [
    {
      table: 'filter',
      name: fromEndpointDispatchChain(),
      rules: [
        ...nd(ND_FROM_WORKLOAD),
        ...dhcp,
        ...keys.map((k) => `${set(k, 'src')} -g ${fromClassChain(k)}`),
        `${comment('Anti-spoof DROP: no endpoint of this host has this source address on this interface')} -j DROP`,
      ],
    },
    {
      table: 'filter',
      name: toEndpointDispatchChain(),
      rules: [...nd(ND_TO_WORKLOAD), ...keys.map((k) => `${set(k, 'dst')} -g ${toClassChain(k)}`), `${comment('Unknown destination interface or address')} -j DROP`],
    },
  ];
  if (hostReaches) {
    chains.push({
      table: 'filter',
      name: hostToEndpointDispatchChain(),
      rules: [...nd(ND_TO_WORKLOAD), ...keys.map((k) => `${set(k, 'dst')} -j RETURN`), `${comment('Unknown destination interface or address')} -j DROP`],
    });
  }
  return chains;
}

/** The profile-composition block of a class chain: first allow wins, a deny drops, no match drops. */
function profileBlock(ids: string[], chainOf: (p: string) => string, mark: number): string[] {
  const rules: string[] = [];
  for (const id of ids) {
    rules.push(`-j MARK --set-xmark 0x0/${hex(mark)}`);
    rules.push(`-j ${chainOf(id)}`);
    rules.push(`-m mark --mark 0x0/${hex(mark)} ${comment(`Return if profile ${id} accepted`)} -j RETURN`);
  }
  return rules;
}

function classDrop(ids: string[]): string {
  return `${comment(`Default DROP if no profile allowed it (profiles: ${ids.join(', ') || 'none'})`)} -j DROP`;
}

/** From a workload of the class with stored profiles `ids` (the dispatch checked its source address): DNS to this host with host services, then its outbound rules. */
export function fromClass(ids: string[], mark: number, hostServices: boolean): DesiredChain {
  const rules: string[] = [];
  if (hostServices) {
    // DNS to this host itself (felix allowed it ahead of policy); forwarded DNS goes through the rules.
    rules.push('-p udp -m udp --dport 53 -m addrtype --dst-type LOCAL -j RETURN');
    rules.push('-p tcp -m tcp --dport 53 -m addrtype --dst-type LOCAL -j RETURN');
  }
  rules.push(...profileBlock(ids, profileOutboundChain, mark), classDrop(ids));
  return { table: 'filter', name: fromClassChain(endpointClassKey(ids)), rules };
}

/** To a workload of the class: its inbound rules. */
export function toClass(ids: string[], mark: number): DesiredChain {
  return { table: 'filter', name: toClassChain(endpointClassKey(ids)), rules: [...profileBlock(ids, profileInboundChain, mark), classDrop(ids)] };
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
