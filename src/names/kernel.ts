// The one place for the names of our kernel objects: iptables chains and
// ipsets. Every chain we own starts with `cali-`, every ipset with `cali`,
// so the applier can tell ours from anybody else's. Each name is built by
// one function; inputs too long for the kernel's limits are shortened with a
// hash of the whole input, never truncated into a collision.
import { createHash } from 'node:crypto';

/** iptables chain names: at most 28 characters (XT_EXTENSION_MAXNAMELEN - 1 - 3). */
export const MAX_CHAIN_NAME = 28;
/** ipset names: at most 31 characters (IPSET_MAXNAMELEN - 1). */
export const MAX_IPSET_NAME = 31;

/** Prefix of every iptables chain we own. */
export const CHAIN_PREFIX = 'cali-';
/** Prefix of every ipset we own. */
export const IPSET_PREFIX = 'cali';

/**
 * `prefix + name`, or when that exceeds `max`, `prefix + head of name + "_" + hash`
 * where the hash covers the whole name: two different names never map to one result.
 */
export function fitName(prefix: string, name: string, max: number): string {
  const full = prefix + name;
  if (full.length <= max) return full;
  const hash = createHash('sha256').update(name).digest('base64url').replace(/[-_]/g, 'x').slice(0, 10);
  const room = max - prefix.length - hash.length - 1;
  return `${prefix}${name.slice(0, Math.max(0, room))}_${hash}`;
}

/** Whether a chain is ours (the applier manages only these). */
export function isOurChain(name: string): boolean {
  return name.startsWith(CHAIN_PREFIX);
}

/** Whether an ipset is ours. */
export function isOurIpset(name: string): boolean {
  return name.startsWith(IPSET_PREFIX);
}

// ---- Kernel applier and NAT outgoing (src/dataplane/applier, src/dataplane/nat-outgoing) ----

/**
 * The applier's scratch set: a changed set is filled under this name and
 * swapped in, then this one is destroyed. One name serves every set because
 * sets are refreshed one after another; a leftover (a crash mid-restore) is
 * ours and not desired, so the next apply removes it.
 */
export function applierTempIpset(): string {
  return `${IPSET_PREFIX}-applier-tmp`;
}

/** The nat-table chain that masquerades pool traffic leaving every pool; jumped to from the top of POSTROUTING. */
export function natOutgoingChain(): string {
  return `${CHAIN_PREFIX}nat-outgoing`;
}

/** The ipset of the pools of family v that asked for NAT outgoing (`cali40masq-ipam-pools`; Felix's name). */
export function natMasqPoolsIpset(v: 4 | 6): string {
  return `${IPSET_PREFIX}${v}0masq-ipam-pools`;
}

/** The ipset of every pool of family v: traffic to these keeps its source address. */
export function natAllPoolsIpset(v: 4 | 6): string {
  return `${IPSET_PREFIX}${v}0all-ipam-pools`;
}

// ---------- policy (felix): src/policy ----------
// Top-level chains hooked into filter FORWARD / INPUT / OUTPUT, the dispatch
// chains that send a packet of a `cali*` interface to its endpoint class's
// chains (fc = from workload, tc = to workload) through the class's set of
// (address, interface) pairs, one chain per profile and direction, and one
// ipset per tag and family.

export function policyForwardChain(): string {
  return 'cali-FORWARD';
}

export function policyInputChain(): string {
  return 'cali-INPUT';
}

export function policyOutputChain(): string {
  return 'cali-OUTPUT';
}

/**
 * Dispatch: one rule per endpoint class, matching its set of (address,
 * interface) pairs. `host` is the chain the host's own traffic to its
 * containers takes when the host may always reach them.
 */
export function fromEndpointDispatchChain(): string {
  return 'cali-from-wl-dispatch';
}

export function toEndpointDispatchChain(): string {
  return 'cali-to-wl-dispatch';
}

export function hostToEndpointDispatchChain(): string {
  return 'cali-host-wl-dispatch';
}

/**
 * An endpoint class: the endpoints of this host with the same stored profiles
 * in the same order share their chains, and are dispatched to them through
 * one set of (address, interface) pairs. The key is the profile list joined
 * by `+` (not allowed in a profile name, so two lists never share a key); a
 * class without profiles is `+`.
 */
export function endpointClassKey(profiles: readonly string[]): string {
  return profiles.length ? profiles.join('+') : '+';
}

/** Traffic from a workload of class `key`, past the anti-spoof check of the dispatch: its profiles' outbound rules. */
export function fromClassChain(key: string): string {
  return fitName('cali-fc-', key, MAX_CHAIN_NAME);
}

/** Traffic to a workload of class `key`: its profiles' inbound rules. */
export function toClassChain(key: string): string {
  return fitName('cali-tc-', key, MAX_CHAIN_NAME);
}

/** hash:net,iface of class `key`'s (address, host-side interface) pairs, one set per family: dispatch and anti-spoof in one lookup. */
export function classIpset(family: 4 | 6, key: string): string {
  return fitName(`cali${family}-ep-`, key, MAX_IPSET_NAME);
}

/** A profile's inbound rules (traffic to its members). */
export function profileInboundChain(profile: string): string {
  return fitName('cali-pri-', profile, MAX_CHAIN_NAME);
}

/** A profile's outbound rules (traffic from its members). */
export function profileOutboundChain(profile: string): string {
  return fitName('cali-pro-', profile, MAX_CHAIN_NAME);
}

/**
 * A profile's outbound rules as they apply to traffic to this host itself
 * (INPUT): an allow opens the host only when it names a `dst_net`. Jumped to
 * from the top of the profile's outbound chain when the endpoint-to-host
 * action is drop and the two differ.
 */
export function profileToHostChain(profile: string): string {
  return fitName('cali-prh-', profile, MAX_CHAIN_NAME);
}

/** Addresses of every endpoint (on any host) whose profiles carry `tag`, one set per family. */
export function tagIpset(family: 4 | 6, tag: string): string {
  return fitName(`cali${family}-tag-`, tag, MAX_IPSET_NAME);
}

// ---------- IP-in-IP (src/tunnel) ----------

/** The kernel's IP-in-IP fallback device (module ipip): receives protocol 4 for this host, sends through onlink routes. */
export function ipipDevice(): string {
  return 'tunl0';
}

/**
 * Routing protocol number of the routes the node puts through tunl0 (`ip
 * route ... proto 80`, Felix's number): ours are found, and only ours
 * removed, by it; BIRD's own are proto bird (12).
 */
export const TUNNEL_ROUTE_PROTO = 80;

/** filter chain (hooked from INPUT) that accepts protocol 4 from registered nodes only, and drops and counts the rest. */
export function ipipInputChain(): string {
  return `${CHAIN_PREFIX}ipip-input`;
}

/** hash:ip of every registered node's IPv4 address (Felix: cali40all-hosts). */
export function ipipHostsIpset(): string {
  return `${IPSET_PREFIX}40all-hosts`;
}
