// What a garbage collector needs: every allocation with its owner, sequence
// number and age; a release that re-checks the owner and sequence number at
// the moment of release; cleanup of claims a crashed process left pending;
// an audit of blocks against handles; blocks left outside every pool (a
// `pool remove` cut short); and the release of a dead host's addresses and
// blocks (calicoctl node remove). The policy (which owners are alive, two
// sightings, grace period) is the caller's.
import { backoff, CAS_RETRIES, json } from '../datastore/datastore';
import type { Put } from '../datastore/datastore';
import { checkGuard } from '../datastore/host-store';
import type { Guard } from '../datastore/host-store';
import { DatastoreError } from '../datastore/errors';
import { keys, parseAffinityKey, parseHandleKey } from '../datastore/keys';
import { AffinityValue, BlockValue, HandleValue } from '../datastore/schemas';
import { parseCidr } from '../address/cidr';
import { narrowestPool } from '../address/pools';
import { affinityHost, allocationsIn, cloneBlock, releaseOrdinal, toAllocation } from './block';
import type { IpamContext } from './context';
import { releaseAddress } from './release';
import type { Allocation, Family, OrphanBlock, StaleAffinity } from './types';

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

// ----- blocks outside every pool -----

/**
 * Blocks that lie in no pool of their family: what a `pool remove` cut
 * short (killed after deleting the pool key) leaves. Two reads per family:
 * pools, then blocks.
 */
export async function listOrphanBlocks(ctx: IpamContext): Promise<OrphanBlock[]> {
  const out: OrphanBlock[] = [];
  for (const f of [4, 6] as Family[]) {
    const pools = (await ctx.pools.listVersioned(f)).map((p) => p.pool);
    for (const b of await ctx.ds.list(keys.blocksDir(f), json(BlockValue))) {
      if (narrowestPool(parseCidr(b.value.cidr), pools)) continue;
      out.push({
        family: f,
        block: b.value.cidr,
        host: affinityHost(b.value),
        allocations: b.value.allocations.filter((a) => a !== null).length,
        revision: b.modRevision,
      });
    }
  }
  return out;
}

/**
 * Removes an orphan block (and its host's affinity to it) if it still has
 * the listed revision and holds no address: one transaction guarded by
 * the block's revision, so an allocation or a new pool's re-attribution
 * since the listing makes it "changed" and nothing goes.
 */
export async function removeOrphanBlock(ctx: IpamContext, b: Pick<OrphanBlock, 'family' | 'block' | 'revision'>): Promise<'removed' | 'changed'> {
  const key = keys.block(b.family, b.block);
  const cur = await ctx.ds.get(key, json(BlockValue));
  if (!cur || cur.modRevision !== b.revision || cur.value.allocations.some((a) => a !== null)) return 'changed';
  const host = affinityHost(cur.value);
  const deletes = [key, ...(host ? [keys.affinity(host, b.family, b.block)] : [])];
  const r = await ctx.ds.cas(`removing block ${b.block} (outside every pool)`, [{ key, modRevision: b.revision }], [], deletes);
  if (!r.succeeded) return 'changed';
  ctx.setBlock(key, undefined, r.revision);
  return 'removed';
}

// ----- a dead host's addresses and blocks (calicoctl node remove) -----

export interface HostIpamSurvey {
  /** Allocations the host made (in its blocks or borrowed from others'). */
  allocations: number;
  /** Blocks with the host's affinity. */
  blocks: number;
  /** Affinity keys of the host (confirmed or pending). */
  affinities: number;
}

export interface HostIpamRemoval {
  addresses: number;
  blocksRemoved: number;
  /** The host's blocks that still hold other hosts' (borrowed) addresses: kept, without affinity. */
  blocksReleased: number;
  affinities: number;
}

/** What the host holds in IPAM (read only). */
export async function surveyHost(ctx: IpamContext, host: string): Promise<HostIpamSurvey> {
  const s: HostIpamSurvey = { allocations: 0, blocks: 0, affinities: 0 };
  for (const f of [4, 6] as Family[]) {
    for (const b of await ctx.ds.list(keys.blocksDir(f), json(BlockValue))) {
      if (affinityHost(b.value) === host) s.blocks++;
      s.allocations += b.value.allocations.filter((a) => a?.host === host).length;
    }
    s.affinities += (await ctx.ds.listKeys(keys.hostAffinitiesDir(host, f))).length;
  }
  return s;
}

/**
 * Releases everything a dead host holds in IPAM: the addresses it
 * allocated (wherever they are: its blocks or blocks it borrowed from),
 * its blocks (removed; one still holding another host's borrowed address
 * stays, with no affinity) and its affinities. One transaction per block,
 * guarded by the block's, the handles' and the guard keys' revisions;
 * a crash midway leaves a consistent state that a second run completes.
 */
export async function releaseHost(ctx: IpamContext, host: string, guard: Guard, progress?: (done: number, total: number) => void): Promise<HostIpamRemoval> {
  const res: HostIpamRemoval = { addresses: 0, blocksRemoved: 0, blocksReleased: 0, affinities: 0 };
  const targets: string[] = [];
  for (const f of [4, 6] as Family[]) {
    for (const b of await ctx.ds.list(keys.blocksDir(f), json(BlockValue))) {
      if (affinityHost(b.value) === host || b.value.allocations.some((a) => a?.host === host)) targets.push(b.key);
    }
  }
  for (const [i, key] of targets.entries()) {
    progress?.(i, targets.length);
    const r = await releaseHostInBlock(ctx, key, host, guard);
    res.addresses += r.addresses;
    if (r.block === 'removed') res.blocksRemoved++;
    if (r.block === 'released') res.blocksReleased++;
  }
  progress?.(targets.length, targets.length);
  // Affinities left without a block of the host (pending claims, or blocks removed above with theirs).
  for (const f of [4, 6] as Family[]) {
    const affs = await ctx.ds.rangePrefix(keys.hostAffinitiesDir(host, f), true);
    for (const kv of affs.kvs) {
      const k = kv.key.toString();
      const r = await ctx.ds.cas(`removing block affinity ${k}`, [{ key: k, modRevision: kv.mod_revision }, ...guard], [], [k]);
      checkGuard(r, guard, `removing block affinity ${k}`);
      if (r.succeeded) res.affinities++;
    }
  }
  return res;
}

async function releaseHostInBlock(
  ctx: IpamContext,
  blockKey: string,
  host: string,
  guard: Guard,
): Promise<{ addresses: number; block: 'removed' | 'released' | 'kept' }> {
  for (let attempt = 0; attempt < CAS_RETRIES; attempt++) {
    const cur = await ctx.ds.get(blockKey, json(BlockValue));
    if (!cur) return { addresses: 0, block: 'kept' };
    const v = cloneBlock(cur.value);
    const perHandle = new Map<string, number>();
    v.allocations.forEach((a, ord) => {
      if (a?.host !== host) return;
      releaseOrdinal(v, ord, a.h, a.s);
      perHandle.set(a.h, (perHandle.get(a.h) ?? 0) + 1);
    });
    const ours = affinityHost(v) === host;
    if (!perHandle.size && !ours) return { addresses: 0, block: 'kept' };
    const handleKeys = [...perHandle.keys()].map((h) => keys.handle(h));
    const handles = await ctx.ds.getRaw(handleKeys);
    const puts: Put[] = [];
    const deletes: string[] = [];
    for (const [h, n] of perHandle) {
      const kv = handles.get(keys.handle(h))!;
      if (kv.raw === undefined) continue;
      const hv = ctx.ds.decode(kv.key, kv.raw, json(HandleValue));
      const blocks = { ...hv.blocks };
      blocks[v.cidr] = (blocks[v.cidr] ?? n) - n;
      if (blocks[v.cidr] <= 0) delete blocks[v.cidr];
      if (Object.keys(blocks).length) puts.push({ key: kv.key, value: { ...hv, blocks } satisfies HandleValue });
      else deletes.push(kv.key);
    }
    let outcome: 'removed' | 'released' | 'kept' = 'kept';
    if (ours) {
      const family = parseCidr(v.cidr).family as Family;
      deletes.push(keys.affinity(host, family, v.cidr));
      if (v.allocations.some((a) => a !== null)) {
        // Another host borrowed from this block: its address stays, the block loses its owner.
        v.affinity = null;
        outcome = 'released';
      } else {
        deletes.push(blockKey);
        outcome = 'removed';
      }
    }
    if (outcome !== 'removed') puts.push({ key: blockKey, value: v });
    const what = `releasing ${perHandle.size} address owner(s) of ${host} in block ${v.cidr}`;
    const r = await ctx.ds.cas(
      what,
      [{ key: blockKey, modRevision: cur.modRevision }, ...[...handles.values()].map((kv) => ({ key: kv.key, modRevision: kv.modRevision })), ...guard],
      puts,
      deletes,
    );
    checkGuard(r, guard, what);
    if (r.succeeded) {
      ctx.setBlock(blockKey, outcome === 'removed' ? undefined : v, r.revision);
      return { addresses: [...perHandle.values()].reduce((a, b) => a + b, 0), block: outcome };
    }
    await backoff(attempt);
  }
  throw new DatastoreError('CONFLICT', `releasing ${host}'s addresses in ${blockKey}: still conflicting after ${CAS_RETRIES} attempts`, blockKey);
}
