// One IPAM block as a value: which ordinal belongs to which handle, which
// ordinals are free (oldest-freed first) and the sequence number that makes
// a stale release harmless. Pure functions; callers clone before mutating.
import type { AllocationValue, BlockValue } from '../datastore/schemas';
import { addressAt, BLOCK_SIZE, Cidr, parseCidr } from '../address/cidr';
import type { Allocation, Family } from './types';

export function newBlock(cidr: Cidr, pool: string, host: string | null, now: number): BlockValue {
  return {
    cidr: cidr.text,
    pool,
    affinity: host === null ? null : `host:${host}`,
    claimTime: now,
    seq: 0,
    allocations: new Array(BLOCK_SIZE).fill(null),
    unallocated: Array.from({ length: BLOCK_SIZE }, (_, i) => i),
  };
}

export function cloneBlock(b: BlockValue): BlockValue {
  return {
    ...b,
    allocations: b.allocations.map((a) => (a ? { ...a, a: a.a ? { ...a.a } : undefined } : null)),
    unallocated: [...b.unallocated],
  };
}

export function affinityHost(b: BlockValue): string | undefined {
  return b.affinity?.startsWith('host:') ? b.affinity.slice(5) : undefined;
}

export function freeCount(b: BlockValue): number {
  return b.unallocated.length;
}

export type NewAllocation = Omit<AllocationValue, 's'>;

function record(b: BlockValue, ord: number, a: NewAllocation): void {
  b.seq += 1;
  const v: AllocationValue = { h: a.h, s: b.seq, t: a.t, host: a.host };
  if (a.a && Object.keys(a.a).length) v.a = { ...a.a };
  b.allocations[ord] = v;
}

/** Takes the free ordinal freed longest ago (FIFO). Undefined when the block is full. */
export function takeNext(b: BlockValue, a: NewAllocation): number | undefined {
  const ord = b.unallocated.shift();
  if (ord === undefined) return undefined;
  record(b, ord, a);
  return ord;
}

/** Takes one specific ordinal; false when it is already allocated. */
export function takeOrdinal(b: BlockValue, ord: number, a: NewAllocation): boolean {
  const i = b.unallocated.indexOf(ord);
  if (i < 0) return false;
  b.unallocated.splice(i, 1);
  record(b, ord, a);
  return true;
}

/**
 * Frees an ordinal if, and only if, it is still owned by `handle` (and, when
 * given, still carries sequence number `seq`): a stale release is a no-op.
 * Freed ordinals go to the tail of the free list, so they are reused last.
 */
export function releaseOrdinal(b: BlockValue, ord: number, handle: string, seq?: number): boolean {
  const cur = b.allocations[ord];
  if (!cur || cur.h !== handle || (seq !== undefined && cur.s !== seq)) return false;
  b.allocations[ord] = null;
  b.unallocated.push(ord);
  b.seq += 1;
  return true;
}

/** Frees every ordinal of the handle; returns them. */
export function releaseHandle(b: BlockValue, handle: string): number[] {
  const ords = ordinalsOf(b, handle);
  for (const o of ords) releaseOrdinal(b, o, handle);
  return ords;
}

export function ordinalsOf(b: BlockValue, handle: string): number[] {
  const out: number[] = [];
  b.allocations.forEach((a, i) => {
    if (a?.h === handle) out.push(i);
  });
  return out;
}

export function toAllocation(b: BlockValue, ord: number): Allocation & { seq: number; allocatedAt: number } {
  const a = b.allocations[ord];
  if (!a) throw new Error(`ordinal ${ord} of block ${b.cidr} is not allocated`);
  const c = parseCidr(b.cidr);
  return {
    address: addressAt(c, ord),
    family: c.family as Family,
    handle: a.h,
    host: a.host,
    pool: b.pool,
    block: b.cidr,
    attrs: { ...(a.a ?? {}) },
    seq: a.s,
    allocatedAt: a.t,
  };
}

/** Every allocation of a block, in ordinal order. */
export function allocationsIn(b: BlockValue): ReturnType<typeof toAllocation>[] {
  const out: ReturnType<typeof toAllocation>[] = [];
  b.allocations.forEach((a, i) => {
    if (a) out.push(toAllocation(b, i));
  });
  return out;
}

/** Who owns an allocation, for error messages: "handle X (container Y)". */
export function describeOwner(a: AllocationValue): string {
  const container = a.a?.container ?? a.a?.containerId;
  return container ? `handle ${a.h} (container ${container})` : `handle ${a.h}`;
}
