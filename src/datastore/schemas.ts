// Typed values stored under the keys of ./keys.ts. Every read goes through
// one of these schemas, so a hand-edited or corrupt value is reported with
// its key instead of flowing into the product as garbage.
import { z } from 'zod';
import { isAddress, parseCidr } from '../address/cidr';

const idString = z.string().regex(/^[a-zA-Z0-9_.:-]+$/, 'expected letters, digits, "_", ".", ":" or "-"');
const ipString = z.string().refine(isAddress, 'expected an IPv4 or IPv6 address');
const cidrString = z.string({ invalid_type_error: 'expected a CIDR string' }).superRefine((s, ctx) => {
  try {
    parseCidr(s);
  } catch (e) {
    const why = (e as Error).message.replace(/^".*?" is not a CIDR: /, '');
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `expected a CIDR, got ${JSON.stringify(s)}: ${why}` });
  }
});

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

/** TCP MD5 keys are at most 80 bytes (Linux TCP_MD5SIG_MAXKEYLEN). */
export const BGP_PASSWORD_MAX = 80;

/**
 * Why `pw` cannot be a BGP session password, or undefined when it can.
 * BIRD writes it as `password "<pw>"`, and BIRD 2's config strings have no
 * escapes: a double quote would end the string and a newline is refused;
 * a backslash is literal today but is refused too, so a BIRD that learns
 * escapes never reads a different key. So: printable ASCII (space to "~")
 * without `"` and `\`, 1 to 80 characters.
 */
export function bgpPasswordProblem(pw: string): string | undefined {
  if (pw.length === 0) return 'the password is empty';
  if (pw.length > BGP_PASSWORD_MAX) return `the password is ${pw.length} characters long; TCP MD5 allows at most ${BGP_PASSWORD_MAX}`;
  for (const ch of pw) {
    if (ch === '"') return 'the password contains a double quote ("), which BIRD\'s config cannot hold';
    if (ch === '\\') return 'the password contains a backslash (\\), which BIRD\'s config cannot hold safely';
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || c > 0x7e) {
      const what = ch === '\n' ? 'a newline' : ch === '\r' ? 'a carriage return' : ch === '\t' ? 'a tab' : `the character U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
      return `the password contains ${what}; only printable ASCII characters (space to "~") are allowed`;
    }
  }
  return undefined;
}

/** A BGP session password (TCP MD5), as BIRD can render it: see bgpPasswordProblem. */
export const BgpPasswordValue = z.string().superRefine((s, ctx) => {
  const problem = bgpPasswordProblem(s);
  if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
});
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
  /** TCP MD5 password of the session (ours, additive); absent = none. */
  password: BgpPasswordValue.optional(),
});
export type BgpPeerValue = z.infer<typeof BgpPeerValue>;

/** `/calico/v1/ipam/v4/pool/<cidr>`: the v0.4.5+ pool JSON. */
export const PoolValue = z.object({
  cidr: cidrString,
  /** Present (as the tunnel device name) only when IP-in-IP is on; IPv4 only. */
  ipip: z.string().optional(),
  /** With ipip: `always` (absent: always, as 2015 wrote it) or `cross-subnet` (only towards hosts on another subnet). */
  ipip_mode: z.enum(['always', 'cross-subnet']).optional(),
  /** Present (true) only when outgoing NAT is on. */
  masquerade: z.boolean().optional(),
});
export type PoolValue = z.infer<typeof PoolValue>;

/** A port number or a "lo:hi" range (felix: 1..65535, lo < hi); the message names the value. */
const portSpec = z.unknown().superRefine((v, ctx) => {
  const problem = portProblem(v);
  if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
}) as unknown as z.ZodType<number | string>;

function portProblem(v: unknown): string | undefined {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return `port ${v} is not a whole number`;
    return v >= 1 && v <= 65535 ? undefined : `port ${v} out of range 1..65535`;
  }
  if (typeof v === 'string') {
    const m = /^(\d+):(\d+)$/.exec(v);
    if (!m) return `port range ${JSON.stringify(v)} is not "lo:hi"`;
    const [lo, hi] = [Number(m[1]), Number(m[2])];
    return lo >= 1 && hi <= 65535 && lo < hi ? undefined : `port range "${v}" needs 1 <= lo < hi <= 65535`;
  }
  return `expected a port number or a "lo:hi" range, got ${JSON.stringify(v)}`;
}

const RULE_KEYS = ['action', 'protocol', 'src_tag', 'dst_tag', 'src_net', 'dst_net', 'src_ports', 'dst_ports', 'icmp_type', 'icmp_code', 'ip_version'];

const icmpNumber = (what: string, max: number, why: string) =>
  z
    .number({ invalid_type_error: `expected a number 0..${max}` })
    .refine((n) => Number.isInteger(n) && n >= 0 && n <= max, (n) => ({ message: `${what} ${n} out of range 0..${max}${why}` }));

/** One rule of the 2015 profile schema; unknown keys are an error, as in felix. */
export const RuleValue = z
  .object({
    action: z.enum(['allow', 'deny'], { errorMap: () => ({ message: 'action must be "allow" or "deny"' }) }).optional(),
    protocol: z
      .enum(['tcp', 'udp', 'icmp', 'icmpv6'], { errorMap: () => ({ message: 'protocol must be one of tcp, udp, icmp, icmpv6' }) })
      .optional(),
    src_tag: idString.optional(),
    dst_tag: idString.optional(),
    src_net: cidrString.optional(),
    dst_net: cidrString.optional(),
    src_ports: z.array(portSpec).optional(),
    dst_ports: z.array(portSpec).optional(),
    // xt_icmp reads type 255 as "any type": a rule for 255 would match every ICMP packet.
    icmp_type: icmpNumber('icmp type', 254, ' (255 would match every type)').optional(),
    icmp_code: icmpNumber('icmp code', 255, '').optional(),
    ip_version: z.union([z.literal(4), z.literal(6)], { errorMap: () => ({ message: 'ip_version must be 4 or 6' }) }).optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path: [path], message });
    if (r.icmp_code !== undefined && r.icmp_type === undefined) issue('icmp_code', 'icmp_code needs icmp_type');
    for (const k of ['src_ports', 'dst_ports'] as const) {
      if (r[k]?.length && r.protocol !== 'tcp' && r.protocol !== 'udp') issue(k, `ports need protocol tcp or udp, not ${r.protocol ?? 'none'}`);
    }
    if (r.icmp_type !== undefined && (r.protocol === 'tcp' || r.protocol === 'udp')) issue('icmp_type', `icmp_type needs protocol icmp or icmpv6, not ${r.protocol}`);
    for (const k of ['src_net', 'dst_net'] as const) {
      const net = r[k];
      if (net === undefined) continue;
      let family: 4 | 6;
      try {
        family = parseCidr(net).family;
      } catch {
        continue; // reported by the field itself
      }
      if (r.ip_version !== undefined && r.ip_version !== family) issue(k, `${net} is IPv${family} but ip_version is ${r.ip_version}`);
      if ((r.protocol === 'icmp' && family === 6) || (r.protocol === 'icmpv6' && family === 4)) {
        issue(k, `${net} is IPv${family}, protocol ${r.protocol} is not`);
      }
    }
  });
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
/** What `profile P rule update` accepts: the stored schema, and no key besides id, inbound_rules, outbound_rules. */
export const ProfileRulesInput = ProfileRulesValue.strict();

/**
 * One line per problem, each naming where it is and why, e.g.
 * `inbound_rules[1].dst_ports[0]: port 70000 out of range 1..65535`.
 */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const where = i.path.map((p, n) => (typeof p === 'number' ? `[${p}]` : n === 0 ? p : `.${p}`)).join('');
    let message = i.message;
    if (i.code === z.ZodIssueCode.unrecognized_keys) {
      const allowed = i.path.length >= 2 ? RULE_KEYS.join(', ') : 'id, inbound_rules, outbound_rules';
      message = `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k)).join(', ')} (allowed: ${allowed})`;
    } else if (i.code === z.ZodIssueCode.invalid_type && i.received === 'undefined') {
      message = 'missing';
    }
    return where ? `${where}: ${message}` : message;
  });
}
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

const MAC = /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/;
const ID = /^[a-zA-Z0-9_.:-]+$/;
/** Dotted-decimal IPv4 CIDR without leading zeros: a subset of what parseCidr accepts. */
const V4_CIDR = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\/(3[0-2]|[12]?\d)$/;

function isCidr(s: unknown): boolean {
  if (typeof s !== 'string') return false;
  if (V4_CIDR.test(s)) return true;
  try {
    parseCidr(s);
    return true;
  } catch {
    return false;
  }
}

const isShortName = (s: unknown): s is string => typeof s === 'string' && s.length >= 1 && s.length <= 15;

/**
 * EndpointValue's fast path, for a cluster's worth of endpoints read at once
 * (zod costs ~0.1 ms an endpoint, 10,000 of them a second): the parsed value
 * when `raw` is certainly valid — the same value EndpointValue.parse gives
 * (unknown keys dropped, the interface name defaulted) — and undefined for
 * anything else (invalid, or a shape it leaves to the schema, e.g. the legacy
 * `profile_id`), which then goes through the schema and its messages.
 * Never accepts what the schema rejects (test/unit/datastore-codec.test.ts).
 */
export function fastEndpointValue(raw: unknown): EndpointValue | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  if (!Object.prototype.hasOwnProperty.call(r, 'profile_ids')) return undefined;
  const { state, name, mac, profile_ids, ipv4_nets, ipv6_nets } = r;
  if (state !== 'active' && state !== 'inactive') return undefined;
  if (!isShortName(name) || typeof mac !== 'string' || !MAC.test(mac)) return undefined;
  const ifName = r['container:if_name'] === undefined ? 'eth0' : r['container:if_name'];
  if (!isShortName(ifName)) return undefined;
  if (!Array.isArray(profile_ids) || !profile_ids.every((p) => typeof p === 'string' && ID.test(p))) return undefined;
  if (!Array.isArray(ipv4_nets) || !ipv4_nets.every(isCidr)) return undefined;
  if (!Array.isArray(ipv6_nets) || !ipv6_nets.every(isCidr)) return undefined;
  const v: EndpointValue = { state, name, mac, 'container:if_name': ifName, profile_ids, ipv4_nets, ipv6_nets };
  for (const k of ['ipv4_gateway', 'ipv6_gateway'] as const) {
    const g = r[k];
    if (g === undefined) continue;
    if (g !== null && (typeof g !== 'string' || !isAddress(g))) return undefined;
    v[k] = g;
  }
  return v;
}

/** `/calico/v1/host/<h>/node`: the live node process holding the host name (kept alive by its lease). */
export const HostNodeValue = z.object({
  /** Persistent id of the node, kept in its state directory. */
  id: z.string().min(1),
  pid: z.number().int(),
  /** The machine's own hostname and the node's state directory: what an operator needs to find it. */
  machine: z.string(),
  stateDir: z.string(),
  /** ms since epoch. */
  since: z.number().int().nonnegative(),
});
export type HostNodeValue = z.infer<typeof HostNodeValue>;

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
