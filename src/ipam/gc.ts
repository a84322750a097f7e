// What a garbage collector needs: every allocation with its owner, sequence
// number and age; a release that re-checks the owner and sequence number at
// the moment of release; cleanup of claims a crashed process left pending;
// and an audit of blocks against handles. The policy (which owners are
// alive, two sightings, grace period) is the caller's.
import { json } from '../datastore/datastore';
import { keys, parseAffinityKey, parseHandleKey } from '../datastore/keys';
import { AffinityValue, BlockValue, HandleValue } from '../datastore/schemas';
import { allocationsIn, toAllocation } from './block';
import type { IpamContext } from './context';
import { releaseAddress } from './release';
import type { Allocation, Family, StaleAffinity } from './types';

export interface AllocationRecord extends Allocation {
  /** Block sequence number at allocation: pass it back to releaseIfUnchanged. */
  seq: number;
  /** ms since epoch. */
  allocatedAt: number;
}

export async function listAllocations(ctx: IpamContext, filter: { host?: string; family?: Family } = {}): Promise<AllocationRecord[]> {
  const fams: Family[] = filter.family ? [filter.family] : [4, 6];
  const out: AllocationRecord[] = [];
  for (const f of fams) {
    for (const b of await ctx.ds.list(keys.blocksDir(f), json(BlockValue))) {
      ctx.setBlock(b.key, b.value, b.modRevision);
      for (const a of allocationsIn(b.value)) if (!filter.host || a.host === filter.host) out.push(a);
    }
  }
  return out;
}

/**
 * Allocations whose handle the caller does not vouch for. `owned` says
 * whether a handle still has an owner (e.g. a live container or a pending
 * reservation); `olderThanMs` skips allocations younger than that.
 */
export async function findUnowned(
  ctx: IpamContext,
  owned: (handle: string, a: AllocationRecord) => boolean,
  opts: { host?: string; olderThanMs?: number } = {},
): Promise<AllocationRecord[]> {
  const now = Date.now();
  return (await listAllocations(ctx, { host: opts.host })).filter(
    (a) => !owned(a.handle, a) && (opts.olderThanMs === undefined || now - a.allocatedAt >= opts.olderThanMs),
  );
}

/** Releases each record only if its handle and sequence number are unchanged. Returns how many were freed. */
export async function releaseIfUnchanged(ctx: IpamContext, records: Pick<AllocationRecord, 'address' | 'handle' | 'seq'>[]): Promise<number> {
  let n = 0;
  for (const r of records) if (await releaseAddress(ctx, r.address, r.handle, r.seq)) n++;
  return n;
}

/**
 * Affinities (of every host) that a finished claim would not leave: pending
 * ones (a process died between the two phases of claimBlock, or before it
 * withdrew a lost claim) and confirmed ones whose block is missing or names
 * another host. Three reads: affinities, then the blocks of both families.
 */
export async function listStaleAffinities(ctx: IpamContext): Promise<StaleAffinity[]> {
  const affinities = await ctx.ds.list(keys.affinitiesRoot(), json(AffinityValue));
  if (!affinities.length) return [];
  const blockHost = new Map<string, string | null>();
  for (const f of [4, 6] as Family[]) {
    for (const b of await ctx.ds.list(keys.blocksDir(f), json(BlockValue))) blockHost.set(b.key, b.value.affinity);
  }
  const out: StaleAffinity[] = [];
  for (const a of affinities) {
    const k = parseAffinityKey(a.key);
    if (!k) continue;
    const bk = keys.block(k.family, k.cidr);
    const reason: StaleAffinity['reason'] | undefined =
      a.value.state === 'pending'
        ? 'pending'
        : !blockHost.has(bk)
          ? 'block missing'
          : blockHost.get(bk) !== `host:${k.host}`
            ? 'block of another host'
            : undefined;
    if (reason) out.push({ host: k.host, family: k.family, block: k.cidr, state: a.value.state, since: a.value.since, revision: a.modRevision, reason });
  }
  return out;
}

/**
 * Settles one stale affinity if it still has the listed revision: confirmed
 * when its block exists and names its host, deleted otherwise. A live
 * claimBlock that loses its affinity this way notices at its guarded second
 * phase and claims again, so this is safe even against a slow live claim.
 */
export async function settleAffinity(ctx: IpamContext, a: Pick<StaleAffinity, 'host' | 'family' | 'block' | 'revision'>): Promise<'confirmed' | 'removed' | 'changed'> {
  const key = keys.affinity(a.host, a.family, a.block);
  const b = await ctx.ds.get(keys.block(a.family, a.block), json(BlockValue));
  if (b && b.value.affinity === `host:${a.host}`) {
    const r = await ctx.ds.cas(`confirming claim ${key}`, [{ key, modRevision: a.revision }], [
      { key, value: { state: 'confirmed', since: Date.now() } satisfies AffinityValue },
    ]);
    return r.succeeded ? 'confirmed' : 'changed';
  }
  const r = await ctx.ds.cas(`removing stale claim ${key}`, [{ key, modRevision: a.revision }], [], [key]);
  return r.succeeded ? 'removed' : 'changed';
}

/**
 * Finishes or withdraws block claims left pending (a process died between
 * the two phases) for at least `minAgeMs` by their writer's clock: confirmed
 * when the block exists and names the host, deleted otherwise.
 */
export async function cleanupPendingAffinities(ctx: IpamContext, minAgeMs: number): Promise<{ confirmed: number; removed: number }> {
  const res = { confirmed: 0, removed: 0 };
  const now = Date.now();
  for (const a of await listStaleAffinities(ctx)) {
    if (a.state !== 'pending' || now - a.since < minAgeMs) continue;
    const r = await settleAffinity(ctx, a);
    if (r !== 'changed') res[r]++;
  }
  return res;
}

export interface AuditReport {
  blocks: number;
  allocations: number;
  handles: number;
  pendingAffinities: number;
  /** Empty when blocks and handles agree. */
  problems: string[];
}

/**
 * Cross-checks blocks against handles (every allocation counted by its
 * handle, every handle's counts backed by allocations, no block overlapping
 * another or owned by two hosts). Read-only; for tests and diagnostics.
 */
export async function audit(ctx: IpamContext): Promise<AuditReport> {
  const problems: string[] = [];
  const counted = new Map<string, Record<string, number>>();
  let nBlocks = 0;
  let nAlloc = 0;
  const addresses = new Set<string>();
  for (const f of [4, 6] as Family[]) {
    for (const b of await ctx.ds.list(keys.blocksDir(f), json(BlockValue))) {
      nBlocks++;
      b.value.allocations.forEach((a, ord) => {
        if (!a) return;
        nAlloc++;
        const addr = toAllocation(b.value, ord).address;
        if (addresses.has(addr)) problems.push(`address ${addr} appears twice`);
        addresses.add(addr);
        const c = counted.get(a.h) ?? {};
        c[b.value.cidr] = (c[b.value.cidr] ?? 0) + 1;
        counted.set(a.h, c);
      });
    }
  }
  const handles = await ctx.ds.list(keys.handlesDir(), json(HandleValue));
  const seen = new Set<string>();
  for (const h of handles) {
    const name = parseHandleKey(h.key)!;
    seen.add(name);
    const want = counted.get(name) ?? {};
    for (const [cidr, n] of Object.entries(h.value.blocks)) {
      if ((want[cidr] ?? 0) !== n) problems.push(`handle ${name} counts ${n} in ${cidr}, block has ${want[cidr] ?? 0}`);
    }
    for (const [cidr, n] of Object.entries(want)) {
      if (h.value.blocks[cidr] === undefined) problems.push(`block ${cidr} has ${n} of ${name}, handle does not count it`);
    }
  }
  for (const name of counted.keys()) if (!seen.has(name)) problems.push(`allocations of ${name} have no handle record`);
  const pending = (await ctx.ds.list(keys.affinitiesRoot(), json(AffinityValue))).filter((a) => a.value.state === 'pending');
  return { blocks: nBlocks, allocations: nAlloc, handles: handles.length, pendingAffinities: pending.length, problems };
}
