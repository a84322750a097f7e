// One 2015 profile rule -> the iptables rule specs that express it in one
// address family (pure). Specs are written the way `iptables-save` prints
// them back (matches in its order, `-m tcp`/`-m multiport` spelled out,
// host addresses with their prefix length), so the applier's diff against
// the kernel sees no difference where there is none.
import { parseCidr } from '../address/cidr';
import type { RuleValue } from '../datastore/schemas';
import type { IpFamily } from '../dataplane/applier/types';
import { tagIpset } from '../names/kernel';

/** At most 15 ports per `-m multiport` match, a range counting as two (the kernel's XT_MULTI_PORTS). */
export const MULTIPORT_MAX = 15;

type PortSpec = number | string;

/**
 * Splits a port list into multiport chunks of at most 15 slots (a "lo:hi"
 * range takes two), keeping the order. One chunk per iptables rule: the
 * rules are ORed by being alternatives in the same chain.
 */
export function portChunks(ports: PortSpec[]): string[][] {
  const chunks: string[][] = [];
  let cur: string[] = [];
  let used = 0;
  for (const p of ports) {
    const text = typeof p === 'number' ? String(p) : p;
    const cost = text.includes(':') ? 2 : 1;
    if (used + cost > MULTIPORT_MAX) {
      chunks.push(cur);
      cur = [];
      used = 0;
    }
    cur.push(text);
    used += cost;
  }
  if (cur.length) chunks.push(cur);
  return chunks;
}

/** Why a rule has no spec in a family (for the docs and the tests; never an error). */
export type Skip = 'ip_version' | 'src_net family' | 'dst_net family' | 'protocol family';

function netFamily(net: string): IpFamily {
  return parseCidr(net).family;
}

/** iptables-save prints a network with its prefix length, host bits cleared. */
function netText(net: string): string {
  return parseCidr(net).text;
}

/** Whether the rule applies in `family` at all, and why not. */
export function ruleSkip(rule: RuleValue, family: IpFamily): Skip | undefined {
  if (rule.ip_version !== undefined && rule.ip_version !== family) return 'ip_version';
  if (rule.src_net !== undefined && netFamily(rule.src_net) !== family) return 'src_net family';
  if (rule.dst_net !== undefined && netFamily(rule.dst_net) !== family) return 'dst_net family';
  if (rule.protocol === 'icmp' && family === 6) return 'protocol family';
  if (rule.protocol === 'icmpv6' && family === 4) return 'protocol family';
  return undefined;
}

/**
 * The match part of the rule's iptables specs in `family` (several when
 * ports need more than one multiport chunk: the cross product of source and
 * destination chunks), or [] when the rule does not apply there.
 */
export function ruleMatches(rule: RuleValue, family: IpFamily): string[] {
  if (ruleSkip(rule, family)) return [];
  // icmp_type without a protocol means this family's ICMP (the kernel's icmp match needs -p).
  const icmpProto = family === 4 ? 'icmp' : 'ipv6-icmp';
  const proto =
    rule.protocol === 'icmpv6' ? 'ipv6-icmp' : rule.protocol ?? (rule.icmp_type !== undefined ? icmpProto : undefined);
  const head: string[] = [];
  if (rule.src_net !== undefined) head.push(`-s ${netText(rule.src_net)}`);
  if (rule.dst_net !== undefined) head.push(`-d ${netText(rule.dst_net)}`);
  if (proto) head.push(`-p ${proto}`);
  if (rule.icmp_type !== undefined) {
    const tc = rule.icmp_code !== undefined ? `${rule.icmp_type}/${rule.icmp_code}` : `${rule.icmp_type}`;
    head.push(family === 4 ? `-m icmp --icmp-type ${tc}` : `-m icmp6 --icmpv6-type ${tc}`);
  }
  const tail: string[] = [];
  if (rule.src_tag !== undefined) tail.push(`-m set --match-set ${tagIpset(family, rule.src_tag)} src`);
  if (rule.dst_tag !== undefined) tail.push(`-m set --match-set ${tagIpset(family, rule.dst_tag)} dst`);
  const src = rule.src_ports?.length ? portChunks(rule.src_ports) : [undefined];
  const dst = rule.dst_ports?.length ? portChunks(rule.dst_ports) : [undefined];
  const out: string[] = [];
  for (const s of src) {
    for (const d of dst) {
      const ports: string[] = [];
      if (s) ports.push(`-m multiport --sports ${s.join(',')}`);
      if (d) ports.push(`-m multiport --dports ${d.join(',')}`);
      out.push([...head, ...ports, ...tail].join(' '));
    }
  }
  return out;
}

/** Tags a rule refers to (their ipsets must exist before the rule is loaded). */
export function ruleTags(rule: RuleValue): string[] {
  return [rule.src_tag, rule.dst_tag].filter((t): t is string => t !== undefined);
}
