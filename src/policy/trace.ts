// `calicoctl policy trace A B` (pure): the rules one new packet from A to B
// meets, evaluated from the datastore alone — A's outbound side (anti-spoof,
// its profiles in order), then B's inbound side (its profiles in order) —
// with the same semantics the compiler writes into the kernel
// (docs/policy.md, "Semantics"): a rule applies in a family as ruleSkip
// says, the first allow of a profile accepts for that side, a deny drops at
// once, a profile that is not stored matches nothing, no match in any
// profile is the endpoint's "Default DROP", an inactive endpoint has no
// chains (fail closed), traffic to the container's own host meets only the
// rules that name a dst_net (endpoint-to-host action drop), and the host
// reaches its own containers. Each decision names the kernel chain that
// holds it, so the operator (and `--probe`) can read its counters.
import { cidrContains, parseAddress, parseCidr, type Family } from '../address/cidr';
import type { Endpoint } from '../datastore/endpoint-store';
import type { Profile } from '../datastore/profile-store';
import type { RuleValue } from '../datastore/schemas';
import {
  endpointClassKey,
  fromClassChain,
  fromEndpointDispatchChain,
  hostToEndpointDispatchChain,
  policyOutputChain,
  profileInboundChain,
  profileOutboundChain,
  profileToHostChain,
  toClassChain,
  toEndpointDispatchChain,
} from '../names/kernel';
import { endpointClass } from './chains';
import { tagMembers, toHostRules, type EndpointToHostAction } from './compile';
import { ruleSkip } from './rules';

export type TraceProtocol = 'tcp' | 'udp' | 'icmp' | 'icmpv6';

/** One new packet (the first of a connection: nothing is ESTABLISHED yet). */
export interface TracePacket {
  family: Family;
  src: string;
  dst: string;
  protocol: TraceProtocol;
  /** tcp/udp: the source port (default: an ephemeral one no port rule of ours names, see EPHEMERAL_PORT). */
  srcPort?: number;
  dstPort?: number;
  /** icmp/icmpv6: type and code (default: echo request, 8/0 or 128/0). */
  icmpType?: number;
  icmpCode?: number;
}

/** The source port a trace assumes when none is given. */
export const EPHEMERAL_PORT = 40000;

/** One side of the packet: a Calico endpoint, or an address (a host of ours, or anything else). */
export type TraceParty =
  | { kind: 'endpoint'; endpoint: Endpoint }
  | { kind: 'address'; address: string; /** The Calico host this address belongs to, if any. */ host?: string };

export interface TraceOptions {
  /** The endpoint-to-host action of the nodes (`calicoctl node --endpoint-to-host-action`, default drop). */
  endpointToHostAction?: EndpointToHostAction;
  /** PolicyOptions.hostReachesContainers (default true). */
  hostReachesContainers?: boolean;
}

export interface TraceInput {
  /** Every endpoint on every host (tags are made of all of them). */
  endpoints: Endpoint[];
  profiles: Profile[];
  options?: TraceOptions;
}

export type StepKind =
  | 'rule' // a profile rule matched (allow or deny)
  | 'no-match' // a profile was consulted and none of its rules matched
  | 'missing-profile' // a profile the endpoint names is not stored: it matches nothing
  | 'default-drop' // no profile of the endpoint allowed it
  | 'anti-spoof' // the source check of the dispatch: its class set's (address, interface) pairs
  | 'inactive' // no class set holds its pairs: dropped as unknown
  | 'host-reaches' // the host opening a connection to its own container
  | 'neighbour-discovery' // IPv6 ND/MLD, allowed ahead of policy
  | 'host-service' // accept mode: DHCP / DNS to the host, ahead of policy
  | 'not-calico'; // this side is not a Calico endpoint: no rules of ours

export interface TraceStep {
  side: 'outbound' | 'inbound';
  kind: StepKind;
  /** allow/deny end the side; pass goes on to the next step. */
  verdict: 'allow' | 'deny' | 'pass';
  /** The host whose kernel runs this step (undefined for a side that is not an endpoint). */
  host?: string;
  /** The kernel chain that holds the deciding rule (for counters). */
  chain?: string;
  profile?: string;
  /** 1-based, as `calicoctl profile P rule show` numbers them. */
  ruleNumber?: number;
  rule?: RuleValue;
  /** The rules used are the ones to this host (endpoint-to-host action drop). */
  toHost?: boolean;
  note?: string;
}

export interface TraceResult {
  packet: TracePacket;
  verdict: 'allow' | 'deny';
  /** The step that decided (the last deny, else the last side's allow). */
  decidedBy: TraceStep;
  steps: TraceStep[];
}

const ND_FROM = [130, 131, 132, 133, 135, 136];
const ND_TO = [130, 131, 132, 134, 135, 136];

function contains(net: string, address: string): boolean {
  const a = parseAddress(address);
  return cidrContains(parseCidr(net), a.family, a.value);
}

/** A member of a tag set (an address, or a net as hash:net holds it) contains the address. */
function memberContains(member: string, address: string): boolean {
  if (!member.includes('/')) {
    const a = parseAddress(address);
    const m = parseAddress(member);
    return a.family === m.family && a.value === m.value;
  }
  return contains(member, address);
}

function portIn(ports: (number | string)[], port: number): boolean {
  return ports.some((p) => {
    if (typeof p === 'number') return p === port;
    const [lo, hi] = p.split(':').map(Number);
    return port >= lo! && port <= hi!;
  });
}

/** The address of an endpoint in a family (its first net's address), if any. */
export function endpointAddress(ep: Endpoint, family: Family): string | undefined {
  const n = (family === 4 ? ep.ipv4_nets : ep.ipv6_nets)[0];
  return n === undefined ? undefined : n.slice(0, n.indexOf('/'));
}

/** Whether one profile rule matches the packet, as the compiled iptables rule would. */
export function ruleMatchesPacket(rule: RuleValue, pkt: TracePacket, input: Pick<TraceInput, 'endpoints' | 'profiles'>): boolean {
  if (ruleSkip(rule, pkt.family)) return false;
  const icmpProto: TraceProtocol = pkt.family === 4 ? 'icmp' : 'icmpv6';
  const proto = rule.protocol ?? (rule.icmp_type !== undefined ? icmpProto : undefined);
  if (proto !== undefined && proto !== pkt.protocol) return false;
  if (rule.src_net !== undefined && !contains(rule.src_net, pkt.src)) return false;
  if (rule.dst_net !== undefined && !contains(rule.dst_net, pkt.dst)) return false;
  if (rule.icmp_type !== undefined) {
    if ((pkt.icmpType ?? defaultIcmpType(pkt.family)) !== rule.icmp_type) return false;
    if (rule.icmp_code !== undefined && (pkt.icmpCode ?? 0) !== rule.icmp_code) return false;
  }
  if (rule.src_ports?.length && !portIn(rule.src_ports, pkt.srcPort ?? EPHEMERAL_PORT)) return false;
  if (rule.dst_ports?.length && (pkt.dstPort === undefined || !portIn(rule.dst_ports, pkt.dstPort))) return false;
  if (rule.src_tag !== undefined && !tagMembers(input, rule.src_tag, pkt.family).some((m) => memberContains(m, pkt.src))) return false;
  if (rule.dst_tag !== undefined && !tagMembers(input, rule.dst_tag, pkt.family).some((m) => memberContains(m, pkt.dst))) return false;
  return true;
}

export function defaultIcmpType(family: Family): number {
  return family === 4 ? 8 : 128;
}

/** The endpoint's profiles in order, first allow wins, a deny drops, no match drops. */
function profileSide(
  side: 'outbound' | 'inbound',
  ep: Endpoint,
  pkt: TracePacket,
  input: TraceInput,
  toHost: boolean,
): TraceStep[] {
  const profiles = new Map(input.profiles.map((p) => [p.name, p]));
  const steps: TraceStep[] = [];
  for (const id of ep.profile_ids) {
    const p = profiles.get(id);
    if (!p) {
      steps.push({ side, kind: 'missing-profile', verdict: 'pass', host: ep.host, profile: id });
      continue;
    }
    const all = side === 'inbound' ? p.rules.inbound_rules : p.rules.outbound_rules;
    const rules = toHost ? toHostRules(all) : all;
    // The kernel chain: inbound, outbound, or (to the host, when it differs) the host rules.
    const chain =
      side === 'inbound' ? profileInboundChain(id) : toHost && rules.length !== all.length ? profileToHostChain(id) : profileOutboundChain(id);
    let decided: TraceStep | undefined;
    for (const r of rules) {
      if (!ruleMatchesPacket(r, pkt, input)) continue;
      decided = {
        side, kind: 'rule', verdict: r.action === 'deny' ? 'deny' : 'allow', host: ep.host, chain, profile: id,
        ruleNumber: all.indexOf(r) + 1, rule: r, ...(toHost ? { toHost } : {}),
      };
      break;
    }
    if (decided) {
      steps.push(decided);
      return steps;
    }
    steps.push({ side, kind: 'no-match', verdict: 'pass', host: ep.host, chain, profile: id, ...(toHost ? { toHost } : {}) });
  }
  const key = endpointClassKey(endpointClass(ep, profiles));
  const own = side === 'inbound' ? toClassChain(key) : fromClassChain(key);
  steps.push({ side, kind: 'default-drop', verdict: 'deny', host: ep.host, chain: own, ...(toHost ? { toHost } : {}) });
  return steps;
}

function outbound(a: Endpoint, b: TraceParty, pkt: TracePacket, input: TraceInput): TraceStep[] {
  const side = 'outbound';
  if (a.state !== 'active') return [{ side, kind: 'inactive', verdict: 'deny', host: a.host, chain: fromEndpointDispatchChain() }];
  // Neighbour discovery, DHCP and the source check are the dispatch's; DNS to the host the class chain's.
  const dispatch = fromEndpointDispatchChain();
  if (pkt.family === 6 && pkt.protocol === 'icmpv6' && ND_FROM.includes(pkt.icmpType ?? -1)) {
    return [{ side, kind: 'neighbour-discovery', verdict: 'allow', host: a.host, chain: dispatch }];
  }
  const accept = (input.options?.endpointToHostAction ?? 'drop') === 'accept';
  const toOwnHost = b.kind === 'address' && b.host === a.host;
  if (accept && pkt.protocol === 'udp' && pkt.srcPort === (pkt.family === 4 ? 68 : 546) && pkt.dstPort === (pkt.family === 4 ? 67 : 547)) {
    return [{ side, kind: 'host-service', verdict: 'allow', host: a.host, chain: dispatch, note: 'DHCP' }];
  }
  const nets = pkt.family === 4 ? a.ipv4_nets : a.ipv6_nets;
  const steps: TraceStep[] = [];
  if (!nets.some((n) => contains(n, pkt.src))) {
    return [{ side, kind: 'anti-spoof', verdict: 'deny', host: a.host, chain: dispatch }];
  }
  steps.push({ side, kind: 'anti-spoof', verdict: 'pass', host: a.host, chain: dispatch });
  if (accept && toOwnHost && (pkt.protocol === 'udp' || pkt.protocol === 'tcp') && pkt.dstPort === 53) {
    const key = endpointClassKey(endpointClass(a, new Set(input.profiles.map((p) => p.name))));
    steps.push({ side, kind: 'host-service', verdict: 'allow', host: a.host, chain: fromClassChain(key), note: 'DNS to this host' });
    return steps;
  }
  steps.push(...profileSide(side, a, pkt, input, toOwnHost && !accept));
  return steps;
}

function inbound(a: TraceParty, b: Endpoint, pkt: TracePacket, input: TraceInput): TraceStep[] {
  const side = 'inbound';
  if (a.kind === 'address' && a.host === b.host && (input.options?.hostReachesContainers ?? true) && b.state === 'active') {
    return [{ side, kind: 'host-reaches', verdict: 'allow', host: b.host, chain: policyOutputChain() }];
  }
  if (a.kind === 'address' && a.host === b.host && (input.options?.hostReachesContainers ?? true)) {
    return [{ side, kind: 'inactive', verdict: 'deny', host: b.host, chain: hostToEndpointDispatchChain() }];
  }
  if (b.state !== 'active') return [{ side, kind: 'inactive', verdict: 'deny', host: b.host, chain: toEndpointDispatchChain() }];
  if (pkt.family === 6 && pkt.protocol === 'icmpv6' && ND_TO.includes(pkt.icmpType ?? -1)) {
    return [{ side, kind: 'neighbour-discovery', verdict: 'allow', host: b.host, chain: toEndpointDispatchChain() }];
  }
  return profileSide(side, b, pkt, input, false);
}

/**
 * Evaluates one new packet from `a` to `b`: A's outbound side when A is an
 * endpoint, then (if it allowed) B's inbound side when B is an endpoint.
 * Both sides run, on their own hosts, whether or not the hosts are the same.
 */
export function tracePolicy(input: TraceInput, a: TraceParty, b: TraceParty, pkt: TracePacket): TraceResult {
  const steps: TraceStep[] = [];
  if (a.kind === 'endpoint') steps.push(...outbound(a.endpoint, b, pkt, input));
  else steps.push({ side: 'outbound', kind: 'not-calico', verdict: 'allow', ...(a.host ? { host: a.host } : {}) });
  const out = steps[steps.length - 1]!;
  if (out.verdict !== 'deny') {
    if (b.kind === 'endpoint') steps.push(...inbound(a, b.endpoint, pkt, input));
    else steps.push({ side: 'inbound', kind: 'not-calico', verdict: 'allow', ...(b.host ? { host: b.host } : {}) });
  }
  const last = steps[steps.length - 1]!;
  const verdict = last.verdict === 'deny' ? 'deny' : 'allow';
  // A side that is not ours decides nothing: the deciding step is the last one of ours.
  const decidedBy = [...steps].reverse().find((s) => s.verdict !== 'pass' && s.kind !== 'not-calico') ?? last;
  return { packet: pkt, verdict, decidedBy, steps };
}

/**
 * `--port` as the CLI takes it: `80`, `80/tcp`, `53/udp`, `icmp`, `icmp/8`,
 * `icmpv6/128/0`. A bare port is tcp; nothing at all is an echo request.
 */
export function parsePortSpec(text: string | undefined, family: Family): Pick<TracePacket, 'protocol' | 'dstPort' | 'icmpType' | 'icmpCode'> {
  const icmp: TraceProtocol = family === 4 ? 'icmp' : 'icmpv6';
  if (text === undefined || text === '') return { protocol: icmp, icmpType: defaultIcmpType(family), icmpCode: 0 };
  const parts = text.toLowerCase().split('/');
  const num = (s: string | undefined, max: number, what: string): number => {
    if (s === undefined || !/^\d+$/.test(s) || Number(s) > max) throw new Error(`invalid ${what} "${s ?? ''}" in "${text}"`);
    return Number(s);
  };
  if (parts[0] === 'icmp' || parts[0] === 'icmpv6') {
    const protocol = parts[0] as TraceProtocol;
    if (protocol !== icmp) throw new Error(`"${text}": ${protocol} is not IPv${family}'s ICMP (${icmp})`);
    const icmpType = parts[1] === undefined ? defaultIcmpType(family) : num(parts[1], 254, 'icmp type');
    const icmpCode = parts[2] === undefined ? 0 : num(parts[2], 255, 'icmp code');
    if (parts.length > 3) throw new Error(`"${text}": expected icmp[/type[/code]]`);
    return { protocol, icmpType, icmpCode };
  }
  const port = num(parts[0], 65535, 'port');
  if (port === 0) throw new Error(`invalid port "0" in "${text}"`);
  const proto = parts[1] ?? 'tcp';
  if ((proto !== 'tcp' && proto !== 'udp') || parts.length > 2) throw new Error(`"${text}": expected PORT[/tcp|/udp] or icmp[/type[/code]]`);
  return { protocol: proto, dstPort: port };
}
