// Claiming a block for a host, in two phases: (1) create the host's affinity
// as "pending"; (2) one transaction creates the block (only if absent) and
// confirms the affinity, guarded by the pool key's mod revision, so a claim
// racing `pool remove` (which deletes the pool key first) either lands
// before that delete (and the removal then finds and removes the block) or
// fails. A pending affinity counts as absent for ownership; a crash between
// the phases leaves only a pending affinity, which
// cleanupPendingAffinities() removes. Also the borrow scan for when no
// block is free anywhere.
//
// This module sees the IPAM context through ClaimContext, the part of it a
// claim needs; context.ts (which claims blocks ahead of need) imports this
// module, never the other way round.
import type { Logger } from 'pino';
import { keys, parseAffinityKey, parseBlockKey } from '../datastore/keys';
import { json } from '../datastore/datastore';
import type { Datastore, RawKv } from '../datastore/datastore';
import { AffinityValue } from '../datastore/schemas';
import type { BlockValue } from '../datastore/schemas';
import type { Pool } from '../datastore/pool-store';
import { candidateBlocks, Cidr, hostHash, parseCidr } from '../address/cidr';
import { freeCount, newBlock } from './block';
import { narrowestPool, nestedPools, poolOrder } from '../address/pools';
import type { Family } from '../address/cidr';

/** What a claim reads and updates of the IPAM context (see context.ts IpamContext). */
export interface ClaimContext {
  readonly ds: Datastore;
  readonly log?: Logger;
  blockKeyOf(cidr: Cidr): string;
  setBlock(key: string, value: BlockValue | undefined, rev: string): void;
  setBlockRaw(kv: RawKv): { cidr: Cidr; value?: BlockValue };
  addAffine(host: string, family: Family, blockKey: string): void;
  markExhausted(pool: string): void;
  clearExhausted(pool: string): void;
  /** The pool key's mod revision as last read ("0": gone); undefined when not known. */
  poolRevision(pool: string): string | undefined;
  setPoolRevision(pool: string, rev: string): void;
}

/** Blocks tried per claim before concluding that no block is free. */
const MAX_CANDIDATES = 32;

export type ClaimResult = { kind: 'claimed'; blockKey: string } | { kind: 'taken' } | { kind: 'pool gone' };

/**
 * Claims one specific block for the host. "taken" when another host's block
 * already exists there; "pool gone" when the pool it was claimed for no
 * longer exists (nothing of the claim is left then). A block of the same
 * host created concurrently (by another process) is adopted.
 */
export async function claimBlock(ctx: ClaimContext, host: string, block: Cidr, pool: string): Promise<ClaimResult> {
  const affKey = keys.affinity(host, block.family, block.text);
  const blockKey = ctx.blockKeyOf(block);
  const poolKey = keys.pool(block.family, pool);
  let poolRev = ctx.poolRevision(pool);
  if (poolRev === undefined || poolRev === '0') {
    poolRev = (await ctx.ds.getRaw([poolKey])).get(poolKey)!.modRevision;
    ctx.setPoolRevision(pool, poolRev);
  }
  if (poolRev === '0') return { kind: 'pool gone' };
  const pending: AffinityValue = { state: 'pending', since: Date.now() };
  let phase1 = await ctx.ds.cas(`claiming block ${block.text} for ${host}`, [{ key: affKey, modRevision: '0' }], [
    { key: affKey, value: pending },
  ]);
  // Our host's affinity already existed (another process of this host, or a
  // crashed earlier claim): continue from its current revision.
  let affRev = phase1.succeeded ? phase1.revision : phase1.current.get(affKey)!.modRevision;
  for (let attempt = 0; attempt < 5; attempt++) {
    const confirmed: AffinityValue = { state: 'confirmed', since: Date.now() };
    const value = newBlock(block, pool, host, Date.now());
    const r = await ctx.ds.cas(
      `creating block ${block.text} for ${host} in pool ${pool}`,
      [
        { key: blockKey, modRevision: '0' },
        { key: affKey, modRevision: affRev },
        // The pool as read: `pool remove` deletes this key before it lists the blocks to remove.
        { key: poolKey, modRevision: poolRev },
      ],
      [
        { key: blockKey, value },
        { key: affKey, value: confirmed },
      ],
    );
    if (r.succeeded) {
      ctx.setBlock(blockKey, value, r.revision);
      ctx.addAffine(host, block.family, blockKey);
      return { kind: 'claimed', blockKey };
    }
    const cur = ctx.setBlockRaw(r.current.get(blockKey)!);
    const aff = r.current.get(affKey)!;
    const poolNow = r.current.get(poolKey)!;
    ctx.setPoolRevision(pool, poolNow.modRevision);
    if (cur.value) {
      if (cur.value.affinity === `host:${host}`) {
        // Claimed by a sibling process of this host: make sure the affinity says so.
        await ctx.ds.update(keys.affinity(host, block.family, block.text), json(AffinityValue), (a) =>
          a?.state === 'confirmed' ? undefined : confirmed,
        );
        ctx.addAffine(host, block.family, blockKey);
        return { kind: 'claimed', blockKey };
      }
      // Lost the race: withdraw our pending claim (only if it is still ours as written).
      await ctx.ds.cas(`withdrawing claim of ${block.text} for ${host}`, [{ key: affKey, modRevision: aff.modRevision }], [], [affKey]);
      return { kind: 'taken' };
    }
    if (poolNow.raw === undefined) {
      // The pool was removed under the claim: withdraw it (a block outside every pool must never appear).
      if (aff.raw !== undefined) {
        await ctx.ds.cas(`withdrawing claim of ${block.text} for ${host}`, [{ key: affKey, modRevision: aff.modRevision }], [], [affKey]);
      }
      ctx.log?.info({ host, block: block.text, pool }, 'block claim withdrawn: its pool was removed meanwhile');
      return { kind: 'pool gone' };
    }
    poolRev = poolNow.modRevision;
    if (aff.raw === undefined) {
      phase1 = await ctx.ds.cas(`claiming block ${block.text} for ${host}`, [{ key: affKey, modRevision: '0' }], [
        { key: affKey, value: pending },
      ]);
      affRev = phase1.succeeded ? phase1.revision : phase1.current.get(affKey)!.modRevision;
    } else {
      affRev = aff.modRevision;
    }
  }
  return { kind: 'taken' };
}

/**
 * Claims some free block of the family for the host, trying `pools` in
 * order (nested pools first, see poolOrder) and, within a pool, blocks from
 * a host-dependent offset. A block lying inside a narrower pool of `all`
 * belongs to that pool and is never claimed for the wider one. Pools found
 * without a free block are marked exhausted in the context. Undefined when
 * every block of every pool tried exists already (the caller then borrows).
 */
export async function claimAnyBlock(
  ctx: ClaimContext,
  host: string,
  family: Family,
  pools: Pool[],
  all: Pool[] = pools,
): Promise<string | undefined> {
  const existing = new Set(
    (await ctx.ds.listKeys(keys.blocksDir(family))).map((k) => parseBlockKey(k)?.cidr).filter((c): c is string => !!c),
  );
  // Others' pending claims: skip them rather than race for the same block.
  for (const k of await ctx.ds.listKeys(keys.affinitiesRoot())) {
    const a = parseAffinityKey(k);
    if (a && a.family === family && a.host !== host) existing.add(a.cidr);
  }
  let tried = 0;
  for (const pool of poolOrder(pools)) {
    let gone = false;
    const p = parseCidr(pool.cidr);
    const nested = nestedPools(p, all).map((x) => parseCidr(x.cidr));
    for (const cand of candidateBlocks(p, host, existing.size + MAX_CANDIDATES, nested)) {
      if (existing.has(cand.text)) continue;
      if (++tried > MAX_CANDIDATES) return undefined;
      const r = await claimBlock(ctx, host, cand, pool.cidr);
      if (r.kind === 'claimed') {
        ctx.clearExhausted(pool.cidr);
        return r.blockKey;
      }
      if (r.kind === 'pool gone') {
        gone = true;
        break;
      }
      existing.add(cand.text);
    }
    if (!gone) ctx.markExhausted(pool.cidr);
  }
  return undefined;
}

/**
 * Blocks of other hosts (or none) with free addresses, for borrowing when no
 * block can be claimed; read fresh into the cache. Only blocks inside one of
 * `pools`, nested pools' blocks first (see poolOrder); within a pool ordered
 * by a host-derived offset so different hosts borrow from different blocks first.
 */
export async function borrowCandidates(ctx: ClaimContext, host: string, family: Family, pools: Pool[]): Promise<string[]> {
  const r = await ctx.ds.rangePrefix(keys.blocksDir(family), false);
  const order = poolOrder(pools);
  const rank = new Map(order.map((p, i) => [p.cidr, i]));
  const found: { key: string; rank: number }[] = [];
  for (const kv of r.kvs) {
    const key = kv.key.toString();
    try {
      const b = ctx.setBlockRaw({ key, raw: kv.value.toString(), modRevision: kv.mod_revision });
      const pool = b.value && narrowestPool(b.cidr, order);
      if (b.value && pool && freeCount(b.value) > 0) found.push({ key, rank: rank.get(pool.cidr)! });
    } catch (e) {
      ctx.log?.warn({ key }, (e as Error).message);
    }
  }
  if (!found.length) return [];
  const start = Number(hostHash(host) % BigInt(found.length));
  const rotated = [...found.slice(start), ...found.slice(0, start)];
  return rotated.sort((a, b) => a.rank - b.rank).map((x) => x.key);
}
