// Pure: the kernel state NAT outgoing needs for a set of pools, as
// ipset-restore and iptables-restore text. Traffic from a --nat-outgoing pool
// to anywhere outside every pool is masqueraded (the seed's manual
// `iptables -t nat -A POSTROUTING -s <pool> ! -d <pool> -j MASQUERADE`, kept
// correct as pools come and go).
import ipaddr from 'ipaddr.js';

export interface NatPool {
  cidr: string;
  natOutgoing: boolean;
}

/** Names of everything NAT outgoing owns in the kernel; one function builds them. */
export interface NatNames {
  /** iptables chain in the nat table, jumped to from POSTROUTING. */
  chain: string;
  /** ipset of the --nat-outgoing pools of family v. */
  masqSet(v: 4 | 6): string;
  /** ipset of every pool of family v. */
  poolSet(v: 4 | 6): string;
}

/** Default names; tests pass a unique prefix so they never meet a real node's. */
export function natNames(prefix = 'cali'): NatNames {
  const names = {
    chain: `${prefix}-nat-outgoing`,
    masqSet: (v: 4 | 6) => `${prefix}${v}0masq-ipam-pools`,
    poolSet: (v: 4 | 6) => `${prefix}${v}0all-ipam-pools`,
  };
  // Kernel limits: chain names 28 characters, ipset names 31.
  if (names.chain.length > 28 || names.poolSet(4).length > 31 - 4) {
    throw new Error(`NAT name prefix "${prefix}" is too long`);
  }
  return names;
}

function familyOf(cidr: string): 4 | 6 {
  return ipaddr.parseCIDR(cidr)[0].kind() === 'ipv4' ? 4 : 6;
}

export interface NatRules {
  /** ipset-restore input that brings both sets of family v to exactly these members. */
  ipset(v: 4 | 6): string;
  /** iptables-restore --noflush input for the nat table of family v. */
  iptables(v: 4 | 6): string;
  /** Whether any pool of family v has NAT outgoing. */
  active(v: 4 | 6): boolean;
}

export function renderNat(pools: NatPool[], names: NatNames): NatRules {
  const of = (v: 4 | 6) => pools.filter((p) => familyOf(p.cidr) === v);
  const setBody = (name: string, v: 4 | 6, members: string[]) => {
    // Filled under a temporary name and swapped in: the live set is never
    // seen half full by packets in flight.
    const tmp = `${name}-tmp`;
    const family = v === 4 ? 'inet' : 'inet6';
    return [
      `create ${name} hash:net family ${family} -exist`,
      `create ${tmp} hash:net family ${family} -exist`,
      `flush ${tmp}`,
      ...[...new Set(members)].sort().map((m) => `add ${tmp} ${m}`),
      `swap ${tmp} ${name}`,
      `destroy ${tmp}`,
    ];
  };
  return {
    active: (v) => of(v).some((p) => p.natOutgoing),
    ipset: (v) =>
      [
        ...setBody(names.masqSet(v), v, of(v).filter((p) => p.natOutgoing).map((p) => p.cidr)),
        ...setBody(names.poolSet(v), v, of(v).map((p) => p.cidr)),
      ].join('\n') + '\n',
    iptables: (v) => {
      const lines = ['*nat', `:${names.chain} - [0:0]`, `-F ${names.chain}`];
      if (of(v).some((p) => p.natOutgoing)) {
        lines.push(
          `-A ${names.chain} -m set --match-set ${names.masqSet(v)} src -m set ! --match-set ${names.poolSet(v)} dst -j MASQUERADE`,
        );
      }
      lines.push('COMMIT');
      return lines.join('\n') + '\n';
    },
  };
}
