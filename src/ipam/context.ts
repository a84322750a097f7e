// What the IPAM operations share inside one process: the datastore, a cache
// of blocks with their mod revisions (so the fast path can write without
// reading first: a stale entry only costs a failed compare, whose Else branch
// returns the fresh value), the affine-block sets of the hosts it served,
// and the pools' mod revisions that guard a block claim (claim.ts).
import type { Logger } from 'pino';
import { Datastore, json, RawKv } from '../datastore/datastore';
import { DatastoreError } from '../datastore/errors';
import { keys, parseAffinityKey, parseBlockKey } from '../datastore/keys';
import { AffinityValue, BlockValue, HandleValue } from '../datastore/schemas';
import { Pool, PoolStore } from '../datastore/pool-store';
import { Cidr, parseCidr } from '../address/cidr';
import { claimAnyBlock } from './claim';
import { poolOrder } from '../address/pools';
import { Family, IpamError } from './types';

/** How long a pool list ranks the fast path's blocks before it is read again (a new nested pool is used within this). */
export const POOL_CACHE_MS = 1000;
/** How long a pool whose claim found no free block is passed over for claims (then tried again). */
export const EXHAUSTED_MS = 5000;

export interface CachedBlock {
  key: string;
  cidr: Cidr;
  /** Undefined when the block does not exist (rev "0"). */
  value?: BlockValue;
  rev: string;
}

export interface HandleState {
  key: string;
  value?: HandleValue;
  rev: string;
}

export class IpamContext {
  readonly blocks = new Map<string, CachedBlock>();
  /** host -> family -> block keys with a confirmed affinity to the host. */
  private readonly affine = new Map<string, Record<Family, Set<string>>>();
  readonly pools: PoolStore;
  /** Background claims of a host's next block, by "host/family". */
  readonly prefetches = new Map<string, Promise<void>>();
  private readonly prefetchIdleUntil = new Map<string, number>();
  /** The pools last read, per family, in poolOrder, with when they were read. */
  private readonly poolCache = new Map<Family, { pools: Pool[]; at: number }>();
  /** Pools in which a recent claim found no free block, until when that is believed. */
  private readonly exhaustedUntil = new Map<string, number>();
  /** Pool CIDR -> mod revision of its key as last read ("0": gone): the guard of a block claim. */
  private readonly poolRevisions = new Map<string, string>();

  constructor(
    readonly ds: Datastore,
    readonly log?: Logger,
  ) {
    this.pools = new PoolStore(ds);
  }

  blockKeyOf(cidr: Cidr): string {
    return keys.block(cidr.family, cidr.text);
  }

  /** Records what etcd said about a block key (value text or absent). */
  setBlockRaw(kv: RawKv): CachedBlock {
    const parsed = parseBlockKey(kv.key);
    if (!parsed) throw new Error(`not a block key: ${kv.key}`);
    let value: BlockValue | undefined;
    if (kv.raw !== undefined) value = this.ds.decode(kv.key, kv.raw, json(BlockValue));
    const c: CachedBlock = { key: kv.key, cidr: parseCidr(parsed.cidr), value, rev: kv.modRevision };
    this.blocks.set(kv.key, c);
    if (!value) this.forgetAffinity(kv.key);
    return c;
  }

  setBlock(key: string, value: BlockValue | undefined, rev: string): void {
    const parsed = parseBlockKey(key)!;
    this.blocks.set(key, { key, cidr: parseCidr(parsed.cidr), value, rev });
    if (!value) this.forgetAffinity(key);
  }

  private forgetAffinity(blockKey: string): void {
    for (const fams of this.affine.values()) {
      fams[4].delete(blockKey);
      fams[6].delete(blockKey);
    }
  }

  /** Reads blocks (one round trip) into the cache. */
  async readBlocks(blockKeys: string[]): Promise<void> {
    if (!blockKeys.length) return;
    const m = await this.ds.getRaw(blockKeys);
    for (const kv of m.values()) this.setBlockRaw(kv);
  }

  decodeHandle(kv: RawKv): HandleState {
    return {
      key: kv.key,
      value: kv.raw === undefined ? undefined : this.ds.decode(kv.key, kv.raw, json(HandleValue)),
      rev: kv.modRevision,
    };
  }

  affineKeys(host: string, family: Family): string[] {
    return [...(this.affine.get(host)?.[family] ?? [])].sort();
  }

  isLoaded(host: string): boolean {
    return this.affine.has(host);
  }

  addAffine(host: string, family: Family, blockKey: string): void {
    let fams = this.affine.get(host);
    if (!fams) {
      fams = { 4: new Set(), 6: new Set() };
      this.affine.set(host, fams);
    }
    fams[family].add(blockKey);
  }

  /**
   * (Re)loads the host's confirmed affinities and reads the blocks not yet
   * cached: two round trips, once per host, and again when the host's known
   * blocks are full (another process of the same host may have claimed more).
   */
  async loadAffinities(host: string): Promise<void> {
    const fams: Record<Family, Set<string>> = { 4: new Set(), 6: new Set() };
    const entries = await this.ds.list(keys.affinitiesRoot() + host + '/', json(AffinityValue));
    for (const e of entries) {
      const a = parseAffinityKey(e.key);
      if (!a || a.host !== host || e.value.state !== 'confirmed') continue;
      fams[a.family].add(keys.block(a.family, a.cidr));
    }
    this.affine.set(host, fams);
    await this.readBlocks([...fams[4], ...fams[6]].filter((k) => !this.blocks.get(k)?.value));
    for (const k of [...fams[4], ...fams[6]]) {
      const b = this.blocks.get(k);
      // An affinity whose block is gone or names another host is not ours to use.
      if (!b?.value || b.value.affinity !== `host:${host}`) {
        fams[4].delete(k);
        fams[6].delete(k);
      }
    }
  }

  /** Free addresses in the host's known affine blocks. */
  spare(host: string, family: Family): number {
    return this.affineKeys(host, family).reduce((n, k) => n + (this.blocks.get(k)?.value?.unallocated.length ?? 0), 0);
  }

  /**
   * When a host that uses a family is down to its last few free addresses,
   * claims its next block in the background, so no allocation waits for the
   * (four round trip) claim. Finding no free block is remembered for a while
   * rather than re-scanned after every batch.
   */
  maybePrefetch(host: string, family: Family, threshold = 16): void {
    const k = `${host}/${family}`;
    if (this.prefetches.has(k) || (this.prefetchIdleUntil.get(k) ?? 0) > Date.now()) return;
    if (!this.affineKeys(host, family).length || this.spare(host, family) >= threshold) return;
    const p = (async () => {
      const pools = await this.poolsOf(family);
      const claimed = pools.length ? await claimAnyBlock(this, host, family, pools, pools) : undefined;
      if (!claimed) this.prefetchIdleUntil.set(k, Date.now() + 5000);
    })()
      .catch((e) => this.log?.warn({ host, family }, `claiming a spare block: ${(e as Error).message}`))
      .finally(() => this.prefetches.delete(k));
    this.prefetches.set(k, p);
  }

  /** The family's pools, read now, in allocation order (nested pools first); remembered for cachedPools. */
  async poolsOf(family: Family): Promise<Pool[]> {
    const read = await this.pools.listVersioned(family);
    for (const { pool, revision } of read) this.poolRevisions.set(pool.cidr, revision);
    const pools = poolOrder(read.map((r) => r.pool));
    this.poolCache.set(family, { pools, at: Date.now() });
    return pools;
  }

  poolRevision(pool: string): string | undefined {
    return this.poolRevisions.get(pool);
  }

  setPoolRevision(pool: string, rev: string): void {
    this.poolRevisions.set(pool, rev);
  }

  /**
   * The pools read within the last POOL_CACHE_MS, for ranking the host's
   * blocks on the fast path without a read; undefined when older.
   */
  cachedPools(family: Family): Pool[] | undefined {
    const c = this.poolCache.get(family);
    return c && Date.now() - c.at < POOL_CACHE_MS ? c.pools : undefined;
  }

  markExhausted(pool: string): void {
    this.exhaustedUntil.set(pool, Date.now() + EXHAUSTED_MS);
  }

  clearExhausted(pool: string): void {
    this.exhaustedUntil.delete(pool);
  }

  /** True while a recent claim found no free block in the pool. */
  isExhausted(pool: string): boolean {
    return (this.exhaustedUntil.get(pool) ?? 0) > Date.now();
  }
}

/** Maps datastore failures onto the IPAM error codes callers switch on. */
export function toIpamError(e: unknown): unknown {
  if (e instanceof DatastoreError) {
    if (e.code === 'UNAVAILABLE') return new IpamError('UNAVAILABLE', e.message);
    if (e.code === 'CONFLICT') return new IpamError('CONFLICT', e.message);
  }
  return e;
}
