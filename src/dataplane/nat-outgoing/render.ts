// Pure: the kernel state NAT outgoing wants for a set of pools. Traffic from a
// --nat-outgoing pool to anywhere outside every pool is masqueraded (the
// seed's manual `iptables -t nat -A POSTROUTING -s <pool> ! -d <pool> -j
// MASQUERADE`, kept correct as pools come and go). A family none of whose
// pools asks for it gets nothing: no chain, no jump, no sets.
//
// Pools may nest (a /24 without the flag inside a /16 with it): the pool
// that decides is the narrowest one holding the source. The masquerade set
// holds the flagged pools and, as `nomatch` exceptions, the pools without
// the flag that lie inside a flagged one; the kernel's hash:net looks up the
// most specific net first, so an exception keeps its source, and a flagged
// pool inside an exception is masqueraded again, at any depth.
import ipaddr from 'ipaddr.js';
import { cidrContains, parseCidr } from '../../address/cidr';
import type { Pool } from '../../datastore/pool-store';
import { natAllPoolsIpset, natMasqPoolsIpset, natOutgoingChain } from '../../names/kernel';
import { NOMATCH } from '../applier/ipset-save';
import { emptyState, DesiredState, IpFamily } from '../applier/types';

/** What NAT outgoing reads of a pool. */
export type NatPool = Pick<Pool, 'cidr' | 'natOutgoing'>;

function familyOf(cidr: string): IpFamily {
  return ipaddr.parseCIDR(cidr)[0].kind() === 'ipv4' ? 4 : 6;
}

/** The masquerade set's members: flagged pools, and the unflagged ones nested in a flagged pool as exceptions. */
export function masqueradeMembers(pools: NatPool[]): string[] {
  const flagged = pools.filter((p) => p.natOutgoing).map((p) => parseCidr(p.cidr));
  const inFlagged = (cidr: string) => {
    const c = parseCidr(cidr);
    return flagged.some((f) => f.prefix < c.prefix && cidrContains(f, c.family, c.network));
  };
  return pools.filter((p) => p.natOutgoing || inFlagged(p.cidr)).map((p) => (p.natOutgoing ? p.cidr : `${p.cidr} ${NOMATCH}`));
}

export function renderNat(pools: NatPool[]): DesiredState {
  const state = emptyState();
  for (const v of [4, 6] as const) {
    const of = pools.filter((p) => familyOf(p.cidr) === v);
    if (!of.some((p) => p.natOutgoing)) continue;
    const chain = natOutgoingChain();
    const [masq, all] = [natMasqPoolsIpset(v), natAllPoolsIpset(v)];
    const fam = v === 4 ? state.v4 : state.v6;
    fam.ipsets.push(
      { name: masq, type: 'hash:net', family: v, members: masqueradeMembers(of) },
      { name: all, type: 'hash:net', family: v, members: of.map((p) => p.cidr) },
    );
    fam.chains.push({ table: 'nat', name: chain, rules: [`-m set --match-set ${masq} src -m set ! --match-set ${all} dst -j MASQUERADE`] });
    // First in POSTROUTING: Docker's own MASQUERADE rules must not claim pool traffic first.
    fam.hooks.push({ table: 'nat', chain: 'POSTROUTING', rule: `-j ${chain}`, position: 'top' });
  }
  return state;
}
