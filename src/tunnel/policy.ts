// Pure: the filter state for IP-in-IP. Protocol 4 to this host is accepted
// only from registered nodes (an ipset of their --ip, kept from the
// syncer), as Felix did; any other protocol-4 packet is dropped, and the
// drop rule's counter says how many (`calicoctl status`, iptables -nvL).
// The inner packet then enters on tunl0 and meets the same FORWARD chains,
// and so the same profile rules, as routed traffic. No IP-in-IP pool: no
// chain, no hook, no set.
import { emptyState, DesiredState } from '../dataplane/applier/types';
import { ipipHostsIpset, ipipInputChain } from '../names/kernel';
import type { TunnelPlan } from './plan';

/** The rule whose packet counter counts dropped protocol-4 packets from non-nodes. */
export const IPIP_DROP_RULE = '-p 4 -j DROP';

export function renderIpipPolicy(plan: Pick<TunnelPlan, 'enabled' | 'nodeAddresses'>): DesiredState {
  const state = emptyState();
  if (!plan.enabled) return state;
  const chain = ipipInputChain();
  const set = ipipHostsIpset();
  state.v4.ipsets.push({ name: set, type: 'hash:ip', family: 4, members: [...plan.nodeAddresses] });
  state.v4.chains.push({ table: 'filter', name: chain, rules: [`-p 4 -m set --match-set ${set} src -j ACCEPT`, IPIP_DROP_RULE] });
  // Only protocol 4 enters the chain: everything else in INPUT is untouched by it.
  state.v4.hooks.push({ table: 'filter', chain: 'INPUT', rule: `-p 4 -j ${chain}`, position: 'top' });
  return state;
}
