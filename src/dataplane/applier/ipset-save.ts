// Pure: what `ipset list -o save` (same as `ipset save`) prints, and the one
// spelling of a member the kernel prints back, so an unchanged set compares
// equal to what we want.
import ipaddr from 'ipaddr.js';
import type { IpFamily, IpsetType } from './types';

export interface SavedIpset {
  name: string;
  /** e.g. hash:net, hash:ip, hash:ip,port (foreign sets may have any type). */
  type: string;
  family: IpFamily;
  members: string[];
  /** Only in the applier's model (plan.ts expectedKernel): the merged member list it was written from (then `members` is that list). */
  from?: string[];
}

/**
 * A hash:net member written `<net> nomatch` is an exception: the kernel
 * matches the most specific net first, and a nomatch one answers "not in
 * the set" for everything inside it (NAT outgoing's nested pools).
 */
export const NOMATCH = 'nomatch';

export function parseIpsetSave(text: string): Map<string, SavedIpset> {
  const sets = new Map<string, SavedIpset>();
  // A repair pass reads every member of every set (tens of thousands at a cluster's size): the common
  // line, `add <set> <member>` with single spaces, is cut with indexOf; anything else takes the general path.
  let last: SavedIpset | undefined;
  let lastPrefix = '';
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (last && raw.startsWith(lastPrefix) && raw.indexOf(' ', lastPrefix.length) < 0 && raw.length > lastPrefix.length) {
      last.members.push(raw.slice(lastPrefix.length));
      continue;
    }
    if (raw.startsWith('add ')) {
      const a = raw.indexOf(' ', 4);
      const s = a > 4 ? sets.get(raw.slice(4, a)) : undefined;
      if (s && raw.indexOf(' ', a + 1) < 0 && a + 1 < raw.length) {
        s.members.push(raw.slice(a + 1));
        last = s;
        lastPrefix = raw.slice(0, a + 1);
        continue;
      }
    }
    general(sets, raw, i);
  }
  return sets;
}

function general(sets: Map<string, SavedIpset>, raw: string, i: number): void {
  const line = raw.trim();
  if (line === '') return;
  const w = line.split(/\s+/);
  const where = `ipset save line ${i + 1} "${line}"`;
  if (w[0] === 'create') {
    if (w.length < 3) throw new Error(`${where}: too short`);
    const fi = w.indexOf('family');
    const family: IpFamily = fi >= 0 && w[fi + 1] === 'inet6' ? 6 : 4;
    sets.set(w[1]!, { name: w[1]!, type: w[2]!, family, members: [] });
  } else if (w[0] === 'add') {
    const s = sets.get(w[1]!);
    if (!s || w.length < 3) throw new Error(`${where}: member of an unknown set`);
    // Options after the member (timeout, comment, counters...) are not part of it,
    // except `nomatch`: an exception inside a wider member of a hash:net set.
    s.members.push(w.slice(3).includes(NOMATCH) ? `${w[2]} ${NOMATCH}` : w[2]!);
  } else {
    throw new Error(`${where}: neither create nor add`);
  }
}

/**
 * A member as the kernel prints it: addresses compressed and lower case, a
 * network masked to its prefix, and a full-length prefix (/32, /128) left out.
 * Throws, naming the member, when it is not an address (hash:ip) or network
 * (hash:net) of the family.
 */
const MEMBER_CACHE_MAX = 200000;
const memberCache = new Map<string, string>();

export function canonicalMember(type: IpsetType, family: IpFamily, member: string): string {
  // The same members come round on every pass: remembered (bounded); refusals are not cached.
  const key = `${type} ${family} ${member}`;
  const known = memberCache.get(key);
  if (known !== undefined) return known;
  const text = canonicalUncached(type, family, member);
  if (memberCache.size >= MEMBER_CACHE_MAX) memberCache.clear();
  memberCache.set(key, text);
  return text;
}

function canonicalUncached(type: IpsetType, family: IpFamily, member: string): string {
  const [net, flag, ...rest] = member.trim().split(/\s+/);
  if (type === 'hash:net,iface') {
    // `<net>,<interface>`: the net as hash:net spells it, the interface as given (a name the kernel takes: 1-15 characters, no space, "/" or ",").
    const comma = net!.lastIndexOf(',');
    const iface = comma < 0 ? '' : net!.slice(comma + 1);
    if (flag !== undefined || comma < 0 || !/^[^\s/,:]{1,15}$/.test(iface)) throw new Error(`ipset member "${member}" of a hash:net,iface set must be <net>,<interface>`);
    return `${canonicalNet('hash:net', family, net!.slice(0, comma))},${iface}`;
  }
  if (flag === undefined) return canonicalNet(type, family, net!);
  if (flag !== NOMATCH || rest.length || type !== 'hash:net') throw new Error(`ipset member "${member}": only a hash:net member may carry an option, and only "${NOMATCH}"`);
  return `${canonicalNet(type, family, net!)} ${NOMATCH}`;
}

function canonicalNet(type: 'hash:ip' | 'hash:net', family: IpFamily, member: string): string {
  const full = family === 4 ? 32 : 128;
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  let prefix = full;
  try {
    if (member.includes('/')) [addr, prefix] = ipaddr.parseCIDR(member);
    else addr = ipaddr.parse(member);
  } catch {
    throw new Error(`ipset member "${member}" is not an IPv${family} ${type === 'hash:ip' ? 'address' : 'network'}`);
  }
  if ((addr.kind() === 'ipv4' ? 4 : 6) !== family) throw new Error(`ipset member "${member}" is not IPv${family}`);
  if (type === 'hash:ip' && prefix !== full) throw new Error(`ipset member "${member}" of a hash:ip set must be one address`);
  const net = prefix === full ? addr : networkOf(addr, prefix);
  const text = spell(net);
  return prefix === full ? text : `${text}/${prefix}`;
}

function networkOf(addr: ipaddr.IPv4 | ipaddr.IPv6, prefix: number): ipaddr.IPv4 | ipaddr.IPv6 {
  const bytes = addr.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] &= (0xff << (8 - keep)) & 0xff;
  }
  return ipaddr.fromByteArray(bytes);
}

function spell(a: ipaddr.IPv4 | ipaddr.IPv6): string {
  // The kernel prints an IPv4-mapped IPv6 address with a dotted tail.
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) return `::ffff:${(a as ipaddr.IPv6).toIPv4Address().toString()}`;
  return a.toString();
}
