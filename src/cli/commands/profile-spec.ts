// The v0.4.6 rule spec of `calicoctl profile P rule add|remove`, both ways
// (pure): words -> rule JSON, and rule JSON -> the text `rule show` prints.
//   (allow|deny) [(tcp|udp) [from [ports P] [tag T] [CIDR]] [to [ports P] [tag T] [CIDR]]
//                | (icmp|icmpv6) [type T [code C]] [from [tag T] [CIDR]] [to [tag T] [CIDR]]
//                | [from [tag T] [CIDR]] [to [tag T] [CIDR]]]
import type { RuleValue } from '../../datastore/schemas';
import { CliError, UsageError } from '../errors';

const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6'] as const;

/** The rule grammar, for `profile P rule --help` (and docs/calicoctl.md). */
export const RULE_GRAMMAR = `Rule spec (the words after inbound|outbound):
  (allow|deny) [(tcp|udp) [from [ports P] [tag T] [CIDR]] [to [ports P] [tag T] [CIDR]]
               | (icmp|icmpv6) [type T [code C]] [from [tag T] [CIDR]] [to [tag T] [CIDR]]
               | [from [tag T] [CIDR]] [to [tag T] [CIDR]]]
  P: ports and lo:hi ranges, comma separated (80,443,8000:8080); T: a profile tag;
  CIDR: an address or network (10.0.0.0/8, fd00::/64); "from" is the source, "to" the destination.
  Rules are tried in order: the first allow that matches accepts, a deny that matches drops; no match in any of
  the endpoint's profiles drops (docs/policy.md).`;


function parsePorts(text: string): (number | string)[] {
  return text.split(',').map((p) => {
    const range = p.replace('-', ':');
    if (/^\d+$/.test(range)) return Number(range);
    if (/^\d+:\d+$/.test(range)) return range;
    throw new UsageError(`Invalid port "${p}" in "${text}": expected numbers and lo:hi ranges separated by commas, e.g. 80,443,8000:8080.`);
  });
}

/** Parses the words after `inbound|outbound`; the result still goes through RuleValue before anything is written. */
export function parseRuleSpec(words: string[]): RuleValue {
  const w = [...words];
  const usage = (why: string) =>
    new UsageError(`Invalid rule "${words.join(' ')}": ${why}. Expected: (allow|deny) [tcp|udp|icmp|icmpv6] [type T [code C]] [from [ports P] [tag T] [CIDR]] [to [ports P] [tag T] [CIDR]]`);
  const peek = (): string | undefined => w[0];
  const action = w.shift();
  if (action !== 'allow' && action !== 'deny') throw usage('it must start with allow or deny');
  const rule: RuleValue = { action };
  if (peek() && (PROTOCOLS as readonly string[]).includes(peek()!)) rule.protocol = w.shift() as RuleValue['protocol'];
  if (peek() === 'type') {
    if (rule.protocol !== 'icmp' && rule.protocol !== 'icmpv6') throw usage('"type" needs icmp or icmpv6');
    w.shift();
    rule.icmp_type = intArg(w.shift(), 'type', usage);
    if (peek() === 'code') {
      w.shift();
      rule.icmp_code = intArg(w.shift(), 'code', usage);
    }
  }
  for (const dir of ['from', 'to'] as const) {
    if (peek() !== dir) continue;
    w.shift();
    const side = dir === 'from' ? 'src' : 'dst';
    let any = false;
    for (;;) {
      if (peek() === 'ports') {
        w.shift();
        if (rule.protocol !== 'tcp' && rule.protocol !== 'udp') throw new UsageError(`Ports are not valid with protocol ${rule.protocol ? `'${rule.protocol}'` : 'None'}`);
        const p = w.shift();
        if (!p) throw usage('"ports" needs a list');
        rule[`${side}_ports`] = parsePorts(p);
      } else if (peek() === 'tag') {
        w.shift();
        const t = w.shift();
        if (!t) throw usage('"tag" needs a name');
        rule[`${side}_tag`] = t;
      } else if (peek()?.includes('/')) {
        rule[`${side}_net`] = w.shift()!;
      } else break;
      any = true;
    }
    if (!any) throw usage(`"${dir}" needs ports, a tag or a CIDR`);
  }
  if (w.length) throw usage(`unexpected "${w[0]}"`);
  return rule;
}

function intArg(text: string | undefined, what: string, usage: (why: string) => CliError): number {
  if (!text || !/^\d+$/.test(text)) throw usage(`"${what}" needs a number`);
  return Number(text);
}

/** The v0.4.9 spelling: action, protocol, type, code, then from/to with ports, tag and net. */
export function ruleText(r: RuleValue): string {
  const out: string[] = [r.action ?? 'allow'];
  if (r.protocol) out.push(r.protocol);
  if (r.icmp_type !== undefined) out.push('type', String(r.icmp_type));
  if (r.icmp_code !== undefined) out.push('code', String(r.icmp_code));
  for (const [dir, side] of [['from', 'src'], ['to', 'dst']] as const) {
    const ports = r[`${side}_ports`];
    const tag = r[`${side}_tag`];
    const net = r[`${side}_net`];
    if (!ports?.length && tag === undefined && net === undefined) continue;
    out.push(dir);
    if (ports?.length) out.push('ports', ports.join(','));
    if (tag !== undefined) out.push('tag', tag);
    if (net !== undefined) out.push(net);
  }
  if (r.ip_version !== undefined) out.push(`(IPv${r.ip_version} only)`);
  return out.join(' ');
}

/** Rules compare equal when they say the same (key order and a missing "allow" do not matter). */
export function sameRule(a: RuleValue, b: RuleValue): boolean {
  const norm = (r: RuleValue) =>
    JSON.stringify(Object.entries({ ...r, action: r.action ?? 'allow' }).sort(([x], [y]) => (x < y ? -1 : 1)));
  return norm(a) === norm(b);
}
