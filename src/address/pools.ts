// Pure: how nested pools share their addresses. Two CIDRs either do not
// overlap or one lies inside the other, so pools form a tree. Every block
// (and address) belongs to exactly one pool: the narrowest pool that
// contains it. Automatic addresses come from a nested pool before the pool
// around it; pools that do not nest keep their address order.
import { BITS, Cidr, cidrContains, parseCidr } from './cidr';
import type { Family } from './cidr';

export interface PoolRef {
  cidr: string;
}

/** True when `inner` lies inside `outer` (equal CIDRs included). */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix && cidrContains(outer, inner.family, inner.network);
}

function lastAddress(c: Cidr): bigint {
  return c.network + (1n << BigInt(BITS[c.family] - c.prefix)) - 1n;
}

/**
 * Pools in the order automatic allocation tries them: a nested pool before
 * any pool containing it, otherwise by address (sort key: last address,
 * then the longer prefix first; a total order because CIDRs nest or are disjoint).
 */
export function poolOrder<T extends PoolRef>(pools: readonly T[]): T[] {
  const parsed = pools.map((p) => ({ p, c: parseCidr(p.cidr) }));
  parsed.sort((a, b) => {
    if (a.c.family !== b.c.family) return a.c.family - b.c.family;
    const la = lastAddress(a.c);
    const lb = lastAddress(b.c);
    if (la !== lb) return la < lb ? -1 : 1;
    return b.c.prefix - a.c.prefix;
  });
  return parsed.map((x) => x.p);
}

/** The narrowest pool containing the CIDR (a block, or an address as a full-length prefix). */
export function narrowestPool<T extends PoolRef>(c: Cidr, pools: readonly T[]): T | undefined {
  let best: { p: T; prefix: number } | undefined;
  for (const p of pools) {
    const pc = parseCidr(p.cidr);
    if (cidrWithin(c, pc) && (!best || pc.prefix > best.prefix)) best = { p, prefix: pc.prefix };
  }
  return best?.p;
}

/** The narrowest pool containing an address. */
export function poolOfAddress<T extends PoolRef>(family: Family, value: bigint, pools: readonly T[]): T | undefined {
  return narrowestPool({ family, network: value, prefix: BITS[family], text: '' }, pools);
}

/** Pools lying strictly inside `outer`. */
export function nestedPools<T extends PoolRef>(outer: Cidr, pools: readonly T[]): T[] {
  return pools.filter((p) => {
    const c = parseCidr(p.cidr);
    return c.text !== outer.text && cidrWithin(c, outer);
  });
}

/** How a (new) CIDR relates to existing pools: the pools it lies inside and the pools it contains. */
export function poolNesting(c: Cidr, pools: readonly PoolRef[]): { inside: string[]; contains: string[] } {
  const inside: string[] = [];
  const contains: string[] = [];
  for (const p of poolOrder(pools)) {
    const pc = parseCidr(p.cidr);
    if (pc.text === c.text) continue;
    if (cidrWithin(c, pc)) inside.push(pc.text);
    else if (cidrWithin(pc, c)) contains.push(pc.text);
  }
  return { inside, contains };
}

/**
 * One line for `pool add` when the new pool nests with existing ones, or
 * undefined when it does not.
 */
export function nestingNote(c: Cidr, pools: readonly PoolRef[]): string | undefined {
  const { inside, contains } = poolNesting(c, pools);
  if (!inside.length && !contains.length) return undefined;
  const list = (xs: string[]) => `existing pool${xs.length === 1 ? '' : 's'} ${xs.join(', ')}`;
  const parts: string[] = [];
  // The innermost container is the one that matters; name it only.
  if (inside.length) parts.push(`lies inside ${list([inside[0]!])}`);
  if (contains.length) parts.push(`contains ${list(contains)}`);
  return `Pool ${c.text} ${parts.join(' and ')}: automatic addresses come from the narrower pool first`;
}
