// Address math on bigints: pools, blocks and ordinals. Pure; no I/O.
import ipaddr from 'ipaddr.js';
/** An address family. */
export type Family = 4 | 6;

/** Block sizes from later Calico: 64 addresses per block in both families. */
export const BLOCK_PREFIX: Record<Family, number> = { 4: 26, 6: 122 };
export const BITS: Record<Family, number> = { 4: 32, 6: 128 };
export const BLOCK_SIZE = 64;

export interface Cidr {
  family: Family;
  /** Network address (host bits cleared). */
  network: bigint;
  prefix: number;
  /** Canonical text: normalised network address + "/" + prefix. */
  text: string;
}

export class CidrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CidrError';
  }
}

export function parseAddress(text: string): { family: Family; value: bigint } {
  const t = text.trim();
  if (!ipaddr.isValid(t) || (t.includes(':') ? !ipaddr.IPv6.isValid(t) : !ipaddr.IPv4.isValidFourPartDecimal(t))) {
    throw new CidrError(`"${text}" is not a valid IPv4 or IPv6 address`);
  }
  const addr = ipaddr.parse(t);
  if (addr.kind() === 'ipv4') {
    return { family: 4, value: bytesToBigInt(addr.toByteArray()) };
  }
  return { family: 6, value: bytesToBigInt(addr.toByteArray()) };
}

export function isAddress(text: string): boolean {
  try {
    parseAddress(text);
    return true;
  } catch {
    return false;
  }
}

function bytesToBigInt(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function formatAddress(family: Family, value: bigint): string {
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = new Array(n);
  let v = value;
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/** Canonical text of an address ("fd80::0001" -> "fd80::1"). */
export function canonicalAddress(text: string): string {
  const a = parseAddress(text);
  return formatAddress(a.family, a.value);
}

/**
 * Parses and normalises a CIDR: host bits are cleared ("10.1.1.1/8" ->
 * "10.0.0.0/8"). A bare address is refused: a pool without a prefix length
 * is almost always a typo.
 */
export function parseCidr(text: string): Cidr {
  const t = text.trim();
  const slash = t.indexOf('/');
  if (slash < 0) throw new CidrError(`"${text}" is not a CIDR: expected <address>/<prefix length>, e.g. 10.0.0.0/16`);
  const addrText = t.slice(0, slash);
  const prefixText = t.slice(slash + 1);
  let addr: { family: Family; value: bigint };
  try {
    addr = parseAddress(addrText);
  } catch {
    throw new CidrError(`"${text}" is not a CIDR: "${addrText}" is not a valid IPv4 or IPv6 address`);
  }
  const bits = BITS[addr.family];
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
    throw new CidrError(`"${text}" is not a CIDR: prefix length must be a number from 0 to ${bits}`);
  }
  const prefix = Number(prefixText);
  const network = addr.value & netmask(addr.family, prefix);
  return { family: addr.family, network, prefix, text: `${formatAddress(addr.family, network)}/${prefix}` };
}

export function normaliseCidr(text: string): string {
  return parseCidr(text).text;
}

function netmask(family: Family, prefix: number): bigint {
  const bits = BigInt(BITS[family]);
  const all = (1n << bits) - 1n;
  return (all << (bits - BigInt(prefix))) & all;
}

/** Number of addresses in the CIDR. */
export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(BITS[c.family] - c.prefix);
}

export function cidrContains(c: Cidr, family: Family, value: bigint): boolean {
  return family === c.family && (value & netmask(family, c.prefix)) === c.network;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const p = Math.min(a.prefix, b.prefix);
  const m = netmask(a.family, p);
  return (a.network & m) === (b.network & m);
}

/** The block (CIDR) an address belongs to. */
export function blockOf(family: Family, value: bigint): Cidr {
  const prefix = BLOCK_PREFIX[family];
  const network = value & netmask(family, prefix);
  return { family, network, prefix, text: `${formatAddress(family, network)}/${prefix}` };
}

/** Ordinal of an address inside its block (0..63). */
export function ordinalOf(block: Cidr, value: bigint): number {
  return Number(value - block.network);
}

export function addressAt(block: Cidr, ordinal: number): string {
  return formatAddress(block.family, block.network + BigInt(ordinal));
}

/** How many blocks a pool holds (bigint: an IPv6 /64 holds 2^58). */
export function blockCount(pool: Cidr): bigint {
  return 1n << BigInt(BLOCK_PREFIX[pool.family] - pool.prefix);
}

/** The index-th block of a pool. */
export function blockAt(pool: Cidr, index: bigint): Cidr {
  const prefix = BLOCK_PREFIX[pool.family];
  const network = pool.network + (index << BigInt(BITS[pool.family] - prefix));
  return { family: pool.family, network, prefix, text: `${formatAddress(pool.family, network)}/${prefix}` };
}

/** True when the pool can hold at least one whole block. */
export function holdsBlock(pool: Cidr): boolean {
  return pool.prefix <= BLOCK_PREFIX[pool.family];
}

/**
 * Candidate blocks for a new claim, starting at an offset derived from the
 * host name so hosts that boot together try different blocks first instead
 * of all racing for the pool's first one. Yields at most `limit` blocks.
 * Blocks inside an `exclude` CIDR (a pool nested in this one, whose blocks
 * belong to it) are stepped over whole, so a large nested pool costs one step.
 */
export function* candidateBlocks(pool: Cidr, host: string, limit: number, exclude: Cidr[] = []): Generator<Cidr> {
  const total = blockCount(pool);
  const start = hostHash(host) % total;
  const shift = BigInt(BITS[pool.family] - BLOCK_PREFIX[pool.family]);
  const inside = exclude.filter(
    (e) => e.family === pool.family && e.prefix > pool.prefix && cidrContains(pool, e.family, e.network),
  );
  let yielded = 0;
  for (let i = 0n; i < total && yielded < limit; ) {
    const idx = (start + i) % total;
    const b = blockAt(pool, idx);
    const e = inside.find((x) => cidrContains(x, x.family, b.network));
    if (e) {
      // Jump to the first block after the nested CIDR.
      const end = ((e.network - pool.network) >> shift) + blockCount(e);
      i += end - idx;
      continue;
    }
    yield b;
    yielded++;
    i++;
  }
}

/** FNV-1a, 64-bit: a stable spread, not a security property. */
export function hostHash(host: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const ch of Buffer.from(host, 'utf8')) {
    h ^= BigInt(ch);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}
