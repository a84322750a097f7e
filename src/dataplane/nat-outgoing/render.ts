// Pure: the kernel state NAT outgoing wants for a set of pools. Traffic from a
// --nat-outgoing pool to anywhere outside every pool is masqueraded (the
// seed's manual `iptables -t nat -A POSTROUTING -s <pool> ! -d <pool> -j
// MASQUERADE`, kept correct as pools come and go). A family none of whose
// pools asks for it gets nothing: no chain, no jump, no sets.
import ipaddr from 'ipaddr.js';
import type { Pool } from '../../datastore/pool-store';
import { natAllPoolsIpset, natMasqPoolsIpset, natOutgoingChain } from '../../names/kernel';
import { emptyState, DesiredState, IpFamily } from '../applier/types';

/** What NAT outgoing reads of a pool. */
export type NatPool = Pick<Pool, 'cidr' | 'natOutgoing'>;

function familyOf(cidr: string): IpFamily {
  return ipaddr.parseCIDR(cidr)[0].kind() === 'ipv4' ? 4 : 6;
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
      { name: masq, type: 'hash:net', family: v, members: of.filter((p) => p.natOutgoing).map((p) => p.cidr) },
      { name: all, type: 'hash:net', family: v, members: of.map((p) => p.cidr) },
    );
    fam.chains.push({ table: 'nat', name: chain, rules: [`-m set --match-set ${masq} src -m set ! --match-set ${all} dst -j MASQUERADE`] });
    // First in POSTROUTING: Docker's own MASQUERADE rules must not claim pool traffic first.
    fam.hooks.push({ table: 'nat', chain: 'POSTROUTING', rule: `-j ${chain}`, position: 'top' });
  }
  return state;
}
