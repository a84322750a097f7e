// Which routes each host may announce, from the IPAM blocks in the
// datastore. A host announces the blocks affine to it (one aggregate each)
// and, one by one, the addresses it borrowed from blocks that are not (its
// kernel routes to cali interfaces); nothing else is its to announce. The
// mesh import filters (./render.ts) accept exactly this from each peer, so a
// speaker on one host cannot draw another host's addresses to itself. Pure.
import { addressAt, BITS, parseCidr } from '../address/cidr';
import type { BlockValue } from '../datastore/schemas';
import type { HostRoutes } from './types';

/** What one block says about route ownership: its affine host, and who allocated each address when that is another host. */
export interface BlockOwnership {
  cidr: string;
  /** The host the block is affine to (from `affinity: "host:<h>"`), or undefined. */
  host?: string;
  /** Address (/32, /128 CIDR) -> the host that allocated it, for addresses allocated by a host other than `host`. */
  borrowed: Record<string, string>;
}

const AFFINITY_RE = /^host:(.+)$/;

/** The ownership a block's value states (everything allocated by the affine host is covered by its aggregate). */
export function blockOwnership(b: BlockValue): BlockOwnership {
  const host = b.affinity ? AFFINITY_RE.exec(b.affinity)?.[1] : undefined;
  const borrowed: Record<string, string> = {};
  const c = parseCidr(b.cidr);
  b.allocations.forEach((a, ordinal) => {
    if (!a || a.host === host) return;
    borrowed[`${addressAt(c, ordinal)}/${BITS[c.family]}`] = a.host;
  });
  return { cidr: c.text, host, borrowed };
}

/** Per host, sorted: the blocks affine to it and the addresses it borrowed. Equal inputs give equal outputs. */
export function hostRoutesFrom(blocks: Iterable<BlockOwnership>): Record<string, HostRoutes> {
  const out: Record<string, HostRoutes> = {};
  const of = (h: string) => (out[h] ??= { blocks: [], borrowed: [] });
  for (const b of blocks) {
    if (b.host !== undefined) of(b.host).blocks.push(b.cidr);
    for (const [addr, h] of Object.entries(b.borrowed)) of(h).borrowed.push(addr);
  }
  for (const r of Object.values(out)) {
    r.blocks.sort();
    r.borrowed.sort();
  }
  return out;
}
