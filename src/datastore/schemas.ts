// Typed values stored under the keys of ./keys.ts. Every read goes through
// one of these schemas, so a hand-edited or corrupt value is reported with
// its key instead of flowing into the product as garbage.
import { z } from 'zod';
import { isAddress, parseCidr } from '../ipam/cidr';

const idString = z.string().regex(/^[a-zA-Z0-9_.:-]+$/, 'expected letters, digits, "_", ".", ":" or "-"');
const ipString = z.string().refine(isAddress, 'expected an IPv4 or IPv6 address');
const cidrString = z.string().refine((s) => {
  try {
    parseCidr(s);
    return true;
  } catch {
    return false;
  }
}, 'expected a CIDR');

// ---------- /calico/v1 (2015 layout) ----------

/** Plain-string values: "true" for Ready, "cali" for InterfacePrefix, "created" for markers. */
export const TextValue = z.string();
export const IpValue = ipString;
/** bird6_ip is "" when the host has no IPv6. */
export const OptionalIpValue = z.union([z.literal(''), ipString]);
export const AsNumberValue = z.string().regex(/^\d+$/, 'expected an AS number').refine((s) => {
  const n = Number(s);
  return n >= 1 && n <= 4294967295;
}, 'AS number out of range 1..4294967295');
export const BgpNodeMeshValue = z.object({ enabled: z.boolean() });
/**
 * A global or node-specific BGP peer (v0.4.6): `{"ip": "10.0.0.1", "as_num": 64512}`.
 * 2015 wrote as_num as a number; a numeric string is read too.
 */
export const BgpPeerValue = z.object({
  ip: ipString,
  as_num: z.union([z.number().int(), z.string().regex(/^\d+$/, 'expected an AS number')]).refine((n) => {
    const x = Number(n);
    return x >= 1 && x <= 4294967295;
  }, 'AS number out of range 1..4294967295'),
});
export type BgpPeerValue = z.infer<typeof BgpPeerValue>;

/** `/calico/v1/ipam/v4/pool/<cidr>`: the v0.4.5+ pool JSON. */
export const PoolValue = z.object({
  cidr: cidrString,
  /** Present (as the tunnel device name) only when IP-in-IP is on; IPv4 only. */
  ipip: z.string().optional(),
  /** Present (true) only when outgoing NAT is on. */
  masquerade: z.boolean().optional(),
});
export type PoolValue = z.infer<typeof PoolValue>;

const portSpec = z.union([
  z.number().int().min(1).max(65535),
  z.string().regex(/^\d+:\d+$/, 'port range "lo:hi"').refine((s) => {
    const [lo, hi] = s.split(':').map(Number);
    return lo >= 1 && hi <= 65535 && lo < hi;
  }, 'port range needs 1 <= lo < hi <= 65535'),
]);

/** One rule of the 2015 profile schema; unknown keys are an error, as in felix. */
export const RuleValue = z
  .object({
    action: z.enum(['allow', 'deny']).optional(),
    protocol: z.enum(['tcp', 'udp', 'icmp', 'icmpv6']).optional(),
    src_tag: idString.optional(),
    dst_tag: idString.optional(),
    src_net: cidrString.optional(),
    dst_net: cidrString.optional(),
    src_ports: z.array(portSpec).optional(),
    dst_ports: z.array(portSpec).optional(),
    icmp_type: z.number().int().min(0).max(255).optional(),
    icmp_code: z.number().int().min(0).max(255).optional(),
    ip_version: z.union([z.literal(4), z.literal(6)]).optional(),
  })
  .strict()
  .refine((r) => r.icmp_code === undefined || r.icmp_type !== undefined, 'icmp_code needs icmp_type');
export type RuleValue = z.infer<typeof RuleValue>;

/** Felix drops null-valued keys before validating; so do we. */
function dropNulls(v: unknown): unknown {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== null));
  }
  return v;
}

export const ProfileRulesValue = z.object({
  id: z.string().optional(),
  inbound_rules: z.array(z.preprocess(dropNulls, RuleValue)),
  outbound_rules: z.array(z.preprocess(dropNulls, RuleValue)),
});
export type ProfileRulesValue = z.infer<typeof ProfileRulesValue>;
export const ProfileTagsValue = z.array(idString);
export type ProfileTagsValue = z.infer<typeof ProfileTagsValue>;

/**
 * `/calico/v1/host/<h>/workload/docker/<cid>/endpoint/<epid>`: the 2015
 * endpoint JSON (v0.4.6+ `profile_ids`; a legacy `profile_id` is read as a
 * one-element list).
 */
export const EndpointValue = z.preprocess(
  (raw) => {
    if (raw && typeof raw === 'object' && !('profile_ids' in raw) && 'profile_id' in raw) {
      const { profile_id, ...rest } = raw as Record<string, unknown>;
      return { ...rest, profile_ids: typeof profile_id === 'string' ? [profile_id] : [] };
    }
    return raw;
  },
  z.object({
    state: z.enum(['active', 'inactive']),
    /** Host-side veth name ("cali" + 11 hex chars). */
    name: z.string().min(1).max(15),
    /** Container-side MAC. */
    mac: z.string().regex(/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/, 'expected a MAC address'),
    'container:if_name': z.string().min(1).max(15).default('eth0'),
    profile_ids: z.array(idString),
    ipv4_nets: z.array(cidrString),
    ipv6_nets: z.array(cidrString),
    ipv4_gateway: z.union([ipString, z.null()]).optional(),
    ipv6_gateway: z.union([ipString, z.null()]).optional(),
  }),
);
export type EndpointValue = z.infer<typeof EndpointValue>;

// ---------- /calico/ipam/v2 (block IPAM) ----------

/** One allocated ordinal of a block. */
export const AllocationValue = z.object({
  /** Owner handle. */
  h: idString,
  /** Block sequence number when allocated: a release carrying an older one is stale. */
  s: z.number().int().nonnegative(),
  /** Allocation time, ms since epoch (GC grace periods). */
  t: z.number().int().nonnegative(),
  /** Host whose request allocated it. */
  host: z.string(),
  a: z.record(z.string()).optional(),
});
export type AllocationValue = z.infer<typeof AllocationValue>;

export const BlockValue = z
  .object({
    cidr: cidrString,
    pool: cidrString,
    /** "host:<name>", or null for a block nobody owns. */
    affinity: z.string().nullable(),
    claimTime: z.number().int().nonnegative(),
    /** Bumped on every allocation and release. */
    seq: z.number().int().nonnegative(),
    /** Ordinal -> allocation or null; always 64 entries. */
    allocations: z.array(AllocationValue.nullable()).length(64),
    /** Free ordinals, oldest-freed first (FIFO: freed addresses are reused last). */
    unallocated: z.array(z.number().int().min(0).max(63)),
  })
  .refine(
    (b) =>
      b.unallocated.length + b.allocations.filter((x) => x !== null).length === 64 &&
      new Set(b.unallocated).size === b.unallocated.length &&
      b.unallocated.every((o) => b.allocations[o] === null),
    'every ordinal must be either allocated or free, exactly once',
  );
export type BlockValue = z.infer<typeof BlockValue>;

export const AffinityValue = z.object({
  state: z.enum(['pending', 'confirmed']),
  /** ms since epoch: lets GC remove a pending claim left by a crashed process. */
  since: z.number().int().nonnegative(),
});
export type AffinityValue = z.infer<typeof AffinityValue>;

export const HandleValue = z.object({
  handle: idString,
  /** Block CIDR -> how many of its addresses this handle owns. */
  blocks: z.record(z.number().int().positive()),
  /** Id of the last write: after an ambiguous failure we recognise our own commit. */
  op: z.string(),
});
export type HandleValue = z.infer<typeof HandleValue>;
