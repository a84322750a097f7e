// Allocation for one host, a batch of requests at a time (requests that
// queue up while the host's previous batch is in flight go out together).
// Fast path: plan against the cached affine blocks and write every touched
// block and handle in ONE transaction guarded by their mod revisions; a
// conflict's Else branch brings back fresh values, so a retry needs no read.
// Slow paths (explicit address, new block, borrowing) read what they need.
import { randomUUID } from 'node:crypto';
import type { BlockValue, HandleValue } from '../datastore/schemas';
import { backoff, Put } from '../datastore/datastore';
import { DatastoreError } from '../datastore/errors';
import { keys } from '../datastore/keys';
import type { Pool } from '../datastore/pool-store';
import { blockOf, ordinalOf, parseAddress, parseCidr } from '../address/cidr';
import { narrowestPool, nestedPools, poolOfAddress } from '../address/pools';
import { cloneBlock, freeCount, takeNext, takeOrdinal, toAllocation } from './block';
import { addressTakenMessage } from './owner';
import { borrowCandidates, claimAnyBlock, claimBlock } from './claim';
import type { HandleState, IpamContext } from './context';
import { Allocation, Family, IpamError } from './types';

export interface FamilyRequest {
  family: Family;
  /** 'auto' or an explicit canonical address. */
  want: 'auto' | string;
}

export interface Pending {
  handle: string;
  host: string;
  families: FamilyRequest[];
  attrs: Record<string, string>;
  resolve: (a: Allocation[]) => void;
  reject: (e: unknown) => void;
}

type Planned = { p: Pending; assigns: Assignment[] };

interface Assignment {
  family: Family;
  blockKey: string;
  ordinal: number;
}

class NeedPools {
  constructor(readonly family: Family) {}
}
class NeedRead {
  constructor(readonly blockKey: string) {}
}
class NeedClaim {
  constructor(
    readonly family: Family,
    readonly specific?: { blockKey: string; pool: string; address: bigint },
  ) {}
}
type Need = NeedPools | NeedRead | NeedClaim;

/** Bound on plan/commit rounds of one batch (conflicts plus slow-path steps). */
const MAX_ROUNDS = 100;
/** Consecutive UNAVAILABLE commits before the batch fails. */
const MAX_UNAVAILABLE = 3;

export async function allocateBatch(ctx: IpamContext, host: string, batch: Pending[]): Promise<void> {
  const b = new Batch(ctx, host, batch);
  await b.run();
}

class Batch {
  private open: Pending[];
  private readonly handles = new Map<string, HandleState>();
  /** Block keys read during this batch: the only basis for IN_USE / EXHAUSTED answers. */
  private readonly fresh = new Set<string>();
  private readonly pools: Partial<Record<Family, Pool[]>> = {};
  private readonly borrow: Partial<Record<Family, string[]>> = {};
  private readonly refreshed = new Set<Family>();
  /** Plans of our commits by op id: after an ambiguous failure, a handle carrying one proves it landed. */
  private readonly sent = new Map<string, { planned: Planned[]; blocks: Map<string, BlockValue> }>();
  private work = new Map<string, BlockValue | undefined>();
  /** Mod revision of each block as it was when planning read it: the guard of the commit. */
  private planRevs = new Map<string, string>();
  private dirty = new Set<string>();
  /** Blocks the request being planned has already copied. */
  private ownClones = new Set<string>();

  constructor(
    private readonly ctx: IpamContext,
    private readonly host: string,
    batch: Pending[],
  ) {
    // Explicit addresses first, so an auto request never takes an address
    // that an explicit request of the same batch asked for.
    this.open = [...batch].sort((a, b) => explicitCount(b) - explicitCount(a));
  }

  async run(): Promise<void> {
    if (!this.ctx.isLoaded(this.host)) await this.ctx.loadAffinities(this.host);
    let unavailable = 0;
    for (let round = 0; this.open.length && round < MAX_ROUNDS; round++) {
      this.work = new Map();
      this.planRevs = new Map();
      this.dirty = new Set();
      const planned: { p: Pending; assigns: Assignment[] }[] = [];
      const needs: Need[] = [];
      for (const p of [...this.open]) {
        const snapshot = new Map(this.work);
        const dirtyBefore = new Set(this.dirty);
        this.ownClones = new Set();
        try {
          planned.push({ p, assigns: p.families.map((f) => this.planFamily(p, f)) });
        } catch (e) {
          this.work = snapshot; // all-or-none: drop this request's partial plan
          this.dirty = dirtyBefore;
          if (e instanceof NeedPools || e instanceof NeedRead || e instanceof NeedClaim) needs.push(e);
          else this.fail(p, e);
        }
      }
      if (needs.length) {
        await this.resolve(needs);
        continue;
      }
      if (!planned.length) break;
      try {
        const conflicted = await this.commit(planned);
        unavailable = 0;
        if (!conflicted) continue;
      } catch (e) {
        if (!(e instanceof DatastoreError && e.code === 'UNAVAILABLE') || ++unavailable >= MAX_UNAVAILABLE) throw e;
        // The transaction may have landed: read our handles back before planning again.
        await this.recheck(planned.map((x) => keys.handle(x.p.handle))).catch(() => undefined);
      }
      await backoff(round);
    }
    for (const p of this.open) {
      p.reject(new IpamError('CONFLICT', `allocating for ${p.handle} on ${this.host}: gave up after ${MAX_ROUNDS} conflicting attempts`));
    }
  }

  private fail(p: Pending, e: unknown): void {
    this.open = this.open.filter((x) => x !== p);
    p.reject(e);
  }

  /** The block as planned so far; read-only (cached values are shared, never mutated). */
  private block(key: string): BlockValue | undefined {
    if (!this.work.has(key)) {
      const c = this.ctx.blocks.get(key);
      this.work.set(key, c?.value);
      this.planRevs.set(key, c?.rev ?? '0');
    }
    return this.work.get(key);
  }

  private mutate(key: string): BlockValue {
    // Copy-on-write, once per request: the snapshot taken in run() keeps the
    // previous object, so dropping a failed request's plan is a map restore.
    if (this.ownClones.has(key)) return this.work.get(key)!;
    const v = cloneBlock(this.block(key)!);
    this.work.set(key, v);
    this.ownClones.add(key);
    this.dirty.add(key);
    return v;
  }

  private planFamily(p: Pending, f: FamilyRequest): Assignment {
    const rec = { h: p.handle, t: Date.now(), host: p.host, a: p.attrs };
    if (f.want !== 'auto') return this.planExplicit(f.family, f.want, rec);
    // Ranking the host's blocks needs the pools; a list read within the
    // last second will do (no read on the fast path).
    const ranked = this.pools[f.family] ?? this.ctx.cachedPools(f.family);
    if (!ranked) throw new NeedPools(f.family);
    const own = this.bestAffine(f.family, ranked);
    if (own) return { family: f.family, blockKey: own, ordinal: takeNext(this.mutate(own), rec)! };
    for (const key of this.borrow[f.family] ?? []) {
      const b = this.block(key);
      if (b && freeCount(b) > 0) return { family: f.family, blockKey: key, ordinal: takeNext(this.mutate(key), rec)! };
    }
    const pools = this.pools[f.family];
    if (pools && !pools.length) throw new IpamError('NO_POOL', `no IPv${f.family} pool exists (add one with: calicoctl pool add <CIDR>)`);
    if (this.borrow[f.family]) {
      throw new IpamError(
        'EXHAUSTED',
        `no free IPv${f.family} address: ${pools!.length === 1 ? 'pool' : 'pools'} ${pools!.map((x) => x.cidr).join(', ')} ${pools!.length === 1 ? 'is' : 'are'} full`,
      );
    }
    throw new NeedClaim(f.family);
  }

  /**
   * The host's block to take the next address from: one with a free address
   * in the first pool (poolOrder: nested pools first) whose nested pools are
   * all exhausted. A block outside every pool (its pool was just removed) is
   * never used.
   */
  private bestAffine(family: Family, pools: Pool[]): string | undefined {
    let best: { key: string; rank: number } | undefined;
    for (const key of this.ctx.affineKeys(this.host, family)) {
      const b = this.block(key);
      if (!b || freeCount(b) === 0) continue;
      const pool = narrowestPool(parseCidr(b.cidr), pools);
      if (!pool) continue;
      const rank = pools.indexOf(pool);
      if (best && best.rank <= rank) continue;
      if (nestedPools(parseCidr(pool.cidr), pools).some((q) => !this.ctx.isExhausted(q.cidr))) continue;
      best = { key, rank };
    }
    return best?.key;
  }

  /**
   * The pools to claim a block in: in order, those not recently found
   * exhausted, up to the first in which the host already has a free block
   * (that block serves once the ones before are full). All pools when that
   * leaves none, so EXHAUSTED is never answered from a stale mark.
   */
  private claimTargets(family: Family, pools: Pool[]): Pool[] {
    const withFree = new Set<string>();
    for (const key of this.ctx.affineKeys(this.host, family)) {
      const b = this.ctx.blocks.get(key)?.value;
      const pool = b && freeCount(b) > 0 ? narrowestPool(parseCidr(b.cidr), pools) : undefined;
      if (pool) withFree.add(pool.cidr);
    }
    const out: Pool[] = [];
    for (const p of pools) {
      if (withFree.has(p.cidr)) break;
      if (!this.ctx.isExhausted(p.cidr)) out.push(p);
    }
    return out.length ? out : pools;
  }

  private planExplicit(family: Family, address: string, rec: { h: string; t: number; host: string; a: Record<string, string> }): Assignment {
    const pools = this.pools[family];
    if (!pools) throw new NeedPools(family);
    const value = parseAddress(address).value;
    // The narrowest pool containing the address owns its block.
    const pool = poolOfAddress(family, value, pools);
    if (!pool) {
      const all = pools.map((x) => x.cidr).join(', ') || 'none';
      throw new IpamError('NOT_IN_POOL', `${address} is not in any IPv${family} pool (pools: ${all})`);
    }
    const bc = blockOf(family, value);
    const key = this.ctx.blockKeyOf(bc);
    if (!this.fresh.has(key)) throw new NeedRead(key);
    const b = this.block(key);
    if (!b) throw new NeedClaim(family, { blockKey: key, pool: pool.cidr, address: value });
    const ord = ordinalOf(bc, value);
    const owner = b.allocations[ord];
    if (owner) throw new IpamError('IN_USE', addressTakenMessage(address, { handle: owner.h, host: owner.host, attrs: owner.a ?? {} }, this.host), owner.h);
    takeOrdinal(this.mutate(key), ord, rec);
    return { family, blockKey: key, ordinal: ord };
  }

  private async resolve(needs: Need[]): Promise<void> {
    const reads = [...new Set(needs.filter((n): n is NeedRead => n instanceof NeedRead).map((n) => n.blockKey))];
    if (reads.length) {
      await this.ctx.readBlocks(reads);
      reads.forEach((k) => this.fresh.add(k));
    }
    for (const fam of [4, 6] as Family[]) {
      if (needs.some((n) => (n instanceof NeedPools || n instanceof NeedClaim) && n.family === fam) && !this.pools[fam]) {
        this.pools[fam] = await this.ctx.poolsOf(fam);
      }
    }
    for (const n of needs) {
      if (!(n instanceof NeedClaim) || !n.specific) continue;
      const bc = blockOf(n.family, n.specific.address);
      // The pool was removed meanwhile: read the pools again (the address is then NOT_IN_POOL).
      if ((await claimBlock(this.ctx, this.host, bc, n.specific.pool)).kind === 'pool gone') delete this.pools[n.family];
      this.fresh.add(n.specific.blockKey);
    }
    for (const fam of [4, 6] as Family[]) {
      if (!needs.some((n) => n instanceof NeedClaim && !n.specific && n.family === fam)) continue;
      const pools = this.pools[fam]!;
      if (!pools.length) continue; // planFamily now answers NO_POOL
      const prefetch = this.ctx.prefetches.get(`${this.host}/${fam}`);
      if (prefetch) {
        await prefetch;
        if (this.ctx.spare(this.host, fam) > 0) continue;
      }
      if (!this.refreshed.has(fam)) {
        // Another process of this host may have claimed blocks we do not know yet.
        this.refreshed.add(fam);
        await this.ctx.loadAffinities(this.host);
        if (this.ctx.affineKeys(this.host, fam).some((k) => (this.ctx.blocks.get(k)?.value?.unallocated.length ?? 0) > 0)) continue;
      }
      const claimed = await claimAnyBlock(this.ctx, this.host, fam, this.claimTargets(fam, pools), pools);
      if (!claimed) this.borrow[fam] = await borrowCandidates(this.ctx, this.host, fam, pools);
    }
  }

  /** One transaction for the whole batch. True when it conflicted (and the cache is now fresh). */
  private async commit(planned: { p: Pending; assigns: Assignment[] }[]): Promise<boolean> {
    const op = randomUUID();
    this.sent.set(op, { planned, blocks: new Map([...this.dirty].map((k) => [k, this.work.get(k)!])) });
    const counts = new Map<string, Record<string, number>>();
    for (const { p, assigns } of planned) {
      const c = counts.get(p.handle) ?? {};
      for (const a of assigns) {
        const cidr = this.work.get(a.blockKey)!.cidr;
        c[cidr] = (c[cidr] ?? 0) + 1;
      }
      counts.set(p.handle, c);
    }
    const compares: { key: string; modRevision: string }[] = [];
    const puts: Put[] = [];
    for (const key of this.dirty) {
      compares.push({ key, modRevision: this.planRevs.get(key)! });
      puts.push({ key, value: this.work.get(key) });
    }
    for (const [handle, c] of counts) {
      const key = keys.handle(handle);
      const cur = this.handles.get(key);
      const blocks = { ...(cur?.value?.blocks ?? {}) };
      for (const [cidr, n] of Object.entries(c)) blocks[cidr] = (blocks[cidr] ?? 0) + n;
      const value: HandleValue = { handle, blocks, op };
      compares.push({ key, modRevision: cur?.rev ?? '0' });
      puts.push({ key, value });
    }
    const r = await this.ctx.ds.cas(`allocating ${planned.length} address set(s) on ${this.host}`, compares, puts);
    if (r.succeeded) {
      for (const key of this.dirty) this.ctx.setBlock(key, this.work.get(key), r.revision);
      this.finish(planned, (k) => this.work.get(k)!);
      return false;
    }
    this.absorb(r.current);
    return true;
  }

  /** Takes in fresh values after a conflict; resolves the batch if one of our own commits shows up in them. */
  private absorb(current: Map<string, { key: string; raw?: string; modRevision: string }>): void {
    for (const kv of current.values()) {
      if (kv.key.startsWith(keys.handlesDir())) {
        const h = this.ctx.decodeHandle(kv);
        this.handles.set(kv.key, h);
      } else {
        this.ctx.setBlockRaw(kv);
        this.fresh.add(kv.key);
      }
    }
    for (const h of this.handles.values()) {
      const landed = h.value && this.sent.get(h.value.op);
      if (landed) {
        this.finish(landed.planned, (k) => landed.blocks.get(k)!);
        return;
      }
    }
  }

  private async recheck(handleKeys: string[]): Promise<void> {
    const m = await this.ctx.ds.getRaw(handleKeys);
    this.absorb(m);
  }

  private finish(planned: { p: Pending; assigns: Assignment[] }[], blockOfKey: (k: string) => BlockValue): void {
    const done = new Set(planned.map((x) => x.p));
    this.open = this.open.filter((p) => !done.has(p));
    for (const { p, assigns } of planned) {
      p.resolve(assigns.map((a) => stripInternal(toAllocation(blockOfKey(a.blockKey), a.ordinal))));
    }
  }
}

function stripInternal(a: ReturnType<typeof toAllocation>): Allocation {
  const { seq: _s, allocatedAt: _t, ...rest } = a;
  return rest;
}

function explicitCount(p: Pending): number {
  return p.families.filter((f) => f.want !== 'auto').length;
}

