// The contract of the one kernel applier (src/dataplane/applier): each user
// (NAT outgoing, policy) hands it the complete desired state of what it owns;
// the applier merges all users' states, diffs against its model of the kernel
// (read back with iptables-save / ipset save at start, on the repair timer and
// after a failure; between reads, what it last applied), and writes only the
// difference in the order: create/refresh sets -> program chains -> delete
// stale sets. It never touches chains, rules or sets it did not write.

export type IpFamily = 4 | 6;
export type TableName = 'filter' | 'nat' | 'mangle' | 'raw';
export type BuiltinChain = 'PREROUTING' | 'INPUT' | 'FORWARD' | 'OUTPUT' | 'POSTROUTING';

/** One of our chains (name from src/names/kernel.ts) and its complete rule list, in order. */
export interface DesiredChain {
  table: TableName;
  name: string;
  /** Rule specs as iptables-restore takes them after "-A <chain> ", e.g. `-i cali+ -j cali-from-wl`. */
  rules: string[];
}

/** A jump from a built-in chain into one of ours, kept at the top (or bottom) of that chain. */
export interface DesiredHook {
  table: TableName;
  chain: BuiltinChain;
  /** Rule spec, e.g. `-j cali-FORWARD`; it must jump to one of our chains. */
  rule: string;
  position: 'top' | 'bottom';
}

export type IpsetType = 'hash:ip' | 'hash:net' | 'hash:net,iface';

export interface DesiredIpset {
  /** Name from src/names/kernel.ts (at most 31 characters). */
  name: string;
  /** hash:net,iface: members `<net>,<interface>` (created with per-member packet counters). */
  type: IpsetType;
  family: IpFamily;
  members: string[];
}

/** Everything one user wants in the kernel, per address family. */
export interface DesiredState {
  v4: { chains: DesiredChain[]; hooks: DesiredHook[]; ipsets: DesiredIpset[] };
  v6: { chains: DesiredChain[]; hooks: DesiredHook[]; ipsets: DesiredIpset[] };
}

export interface KernelApplier {
  /**
   * Replaces what `owner` wants (an empty state removes what it had). Applied soon, batched with other calls.
   * The state's objects are the applier's from then on (never changed after): handing the same
   * chain or set object again is how an owner says "unchanged" cheaply.
   */
  set(owner: string, desired: DesiredState): void;
  /** Resolves once every set() made before this call is in the kernel (rejects with what failed on what). */
  flush(): Promise<void>;
}

export function emptyState(): DesiredState {
  return { v4: { chains: [], hooks: [], ipsets: [] }, v6: { chains: [], hooks: [], ipsets: [] } };
}
