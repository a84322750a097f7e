// IP pools (/calico/v1/ipam/v4|v6/pool/<cidr>) and their usage, read from
// the IPAM blocks inside them. Pools may nest; a block belongs to the
// narrowest pool containing it.
import type { Family } from '../address/cidr';
import { addressAt, BLOCK_PREFIX, Cidr, CidrError, cidrSize, holdsBlock, parseCidr } from '../address/cidr';
import { cidrWithin, narrowestPool } from '../address/pools';
import { backoff, CAS_RETRIES, Datastore, json, Put, Versioned } from './datastore';
import { DatastoreError } from './errors';
import { keys, parseAffinityKey } from './keys';
import { BlockValue, HandleValue, PoolValue } from './schemas';

/** When a pool's traffic to other hosts is tunnelled: always, or only towards hosts whose address is outside this host's subnet. */
export type IpipMode = 'always' | 'cross-subnet';
export const IPIP_MODES: readonly IpipMode[] = ['always', 'cross-subnet'];

export interface PoolOptions {
  natOutgoing?: boolean;
  /** IP-in-IP on (mode `always` unless ipipMode says otherwise). */
  ipip?: boolean;
  /** Implies ipip. */
  ipipMode?: IpipMode;
}

export interface Pool {
  cidr: string;
  family: Family;
  natOutgoing: boolean;
  ipip: boolean;
  /** Set exactly when ipip is on. */
  ipipMode?: IpipMode;
}

export interface PoolUsage extends Pool {
  /** Addresses allocated in the pool right now. */
  allocated: number;
  /** Addresses in the pool, as a decimal string (an IPv6 /64 exceeds a JS number). */
  capacity: string;
}

/** What removeReport did. */
export interface PoolRemoval {
  /** The pool key was there (false: already removed, or never a pool). */
  existed: boolean;
  /** Blocks removed with it (when !existed: those a removal cut short had left). */
  blocks: number;
  /** Allocated addresses that went with them (only with force). */
  released: number;
}

export interface PoolOwner {
  handle: string;
  address: string;
  /** The allocation's attributes (container id etc.). */
  attrs: Record<string, string>;
}

/** The 2015 default pools, created by the first node when no pool exists. */
export const DEFAULT_POOLS = ['192.168.0.0/16', 'fd80:24e2:f998:72d6::/64'];

const IPIP_DEVICE = 'tunl0';

/** Handles of the addresses nodes give their tunnel device (src/tunnel): not a container's, so they never keep a pool from going. */
export const TUNNEL_HANDLE_PREFIX = 'ipip-tunnel-addr-';

export function poolFromValue(family: Family, v: PoolValue): Pool {
  const pool: Pool = { cidr: parseCidr(v.cidr).text, family, natOutgoing: v.masquerade === true, ipip: v.ipip !== undefined };
  if (pool.ipip) pool.ipipMode = v.ipip_mode ?? 'always';
  return pool;
}

export class PoolStore {
  constructor(private readonly ds: Datastore) {}

  /** Validates and normalises a pool CIDR; INVALID_ARGUMENT with a message for the user. */
  static parse(cidr: string, opts: PoolOptions = {}): Cidr {
    let c: Cidr;
    try {
      c = parseCidr(cidr);
    } catch (e) {
      throw new DatastoreError('INVALID_ARGUMENT', (e as CidrError).message);
    }
    if (!holdsBlock(c)) {
      throw new DatastoreError(
        'INVALID_ARGUMENT',
        `pool ${c.text} is too small: an IPv${c.family} pool must hold at least one /${BLOCK_PREFIX[c.family]} block (prefix length ${BLOCK_PREFIX[c.family]} or less)`,
      );
    }
    if ((opts.ipip || opts.ipipMode) && c.family === 6) {
      // 2015's words (calicoctl v0.4.5), then ours.
      throw new DatastoreError('INVALID_ARGUMENT', `IP in IP not supported for IPv6 pools: ${c.text} is IPv6 (--ipip is for IPv4 pools only)`);
    }
    if (opts.ipipMode !== undefined && !IPIP_MODES.includes(opts.ipipMode)) {
      throw new DatastoreError('INVALID_ARGUMENT', `IP-in-IP mode "${opts.ipipMode}" is not one of ${IPIP_MODES.join(', ')}`);
    }
    return c;
  }

  /**
   * Adds a pool. Idempotent for the same CIDR (the options are updated). A
   * pool may lie inside another or contain others (CIDRs cannot overlap in
   * any other way): each block then belongs to the narrowest pool containing
   * it (see ipam/pools.ts), and the blocks of the pools around the new one
   * that lie inside it are re-attributed to it (ipam/pools.ts nestingNote
   * says how a new pool nests). Returns the pool as stored.
   */
  async add(cidr: string, opts: PoolOptions = {}): Promise<Pool> {
    const c = PoolStore.parse(cidr, opts);
    const value: PoolValue = { cidr: c.text };
    if (opts.ipip || opts.ipipMode) value.ipip = IPIP_DEVICE;
    if (opts.ipipMode === 'cross-subnet') value.ipip_mode = 'cross-subnet';
    if (opts.natOutgoing) value.masquerade = true;
    const key = keys.pool(c.family, c.text);
    await this.ds.put(key, value);
    await this.reattribute(c.family);
    return poolFromValue(c.family, value);
  }

  async get(cidr: string): Promise<Pool | undefined> {
    const c = PoolStore.parse(cidr);
    const v = await this.ds.get(keys.pool(c.family, c.text), json(PoolValue));
    return v ? poolFromValue(c.family, v.value) : undefined;
  }

  private async listFamily(family: Family): Promise<Pool[]> {
    return (await this.listVersioned(family)).map((v) => v.pool);
  }

  /** The family's pools (unsorted), each with its key's mod revision (what a block claim compares). */
  async listVersioned(family: Family): Promise<{ pool: Pool; revision: string }[]> {
    const vs = await this.ds.list(keys.poolsDir(family), json(PoolValue));
    return vs.map((v) => ({ pool: poolFromValue(family, v.value), revision: v.modRevision }));
  }

  /** Pools of one family or both, IPv4 first, each family sorted by address. */
  async list(family?: Family): Promise<Pool[]> {
    const fams: Family[] = family ? [family] : [4, 6];
    const out: Pool[] = [];
    for (const f of fams) {
      const ps = await this.listFamily(f);
      ps.sort((a, b) => cmpBig(parseCidr(a.cidr).network, parseCidr(b.cidr).network));
      out.push(...ps);
    }
    return out;
  }

  /** Pools with allocated/capacity counts (one read of the pools, one of the blocks per family). */
  async listWithUsage(family?: Family): Promise<PoolUsage[]> {
    const pools = await this.list(family);
    const fams = [...new Set(pools.map((p) => p.family))];
    const blocks = (await Promise.all(fams.map((f) => this.blocks(f)))).flat();
    const owner = new Map(blocks.map((b) => [b.key, narrowestPool(parseCidr(b.value.cidr), pools)?.cidr]));
    return pools.map((p) => {
      const inPool = blocks.filter((b) => owner.get(b.key) === p.cidr);
      const allocated = inPool.reduce((n, b) => n + b.value.allocations.filter((a) => a !== null).length, 0);
      return { ...p, allocated, capacity: cidrSize(parseCidr(p.cidr)).toString() };
    });
  }

  private blocks(family: Family): Promise<Versioned<BlockValue>[]> {
    return this.ds.list(keys.blocksDir(family), json(BlockValue));
  }

  /** Who holds addresses in the pool right now (in its own blocks, not those of pools nested in it). */
  async owners(cidr: string): Promise<PoolOwner[]> {
    const c = PoolStore.parse(cidr);
    const pools = await this.listFamily(c.family);
    return ownersIn((await this.blocks(c.family)).filter((b) => narrowestPool(parseCidr(b.value.cidr), pools)?.cidr === c.text));
  }

  /**
   * Who would lose an address if the pool were removed: holders in its
   * blocks that no other pool contains (blocks inside a pool nested in it,
   * or inside a pool around it, pass to that pool and keep their addresses).
   */
  async ownersLostOnRemoval(cidr: string): Promise<PoolOwner[]> {
    const c = PoolStore.parse(cidr);
    const pools = await this.listFamily(c.family);
    const rest = pools.filter((p) => p.cidr !== c.text);
    // A node's tunnel address goes with the pool; the node lets it go when IP-in-IP does.
    return ownersIn((await this.blocks(c.family)).filter((b) => removedWith(c, parseCidr(b.value.cidr), rest))).filter(
      (o) => !o.handle.startsWith(TUNNEL_HANDLE_PREFIX),
    );
  }

  /**
   * Removes a pool. While addresses that would go with it are allocated
   * (ownersLostOnRemoval), refuses (naming how many and to whom) unless
   * `force`; with force, those blocks, their affinities and the handles'
   * references to them go too. Blocks inside another remaining pool stay
   * and are re-attributed to it. Idempotent: false when absent (after
   * finishing a removal that was cut short, see removeReport).
   */
  async remove(cidr: string, opts: { force?: boolean } = {}): Promise<boolean> {
    return (await this.removeReport(cidr, opts)).existed;
  }

  /**
   * remove(), saying what it did. A removal cut short (killed after the
   * pool key went, before its blocks did) leaves blocks outside every pool:
   * the next removal of the same CIDR finds the key gone and finishes the
   * job, under the same rule (blocks holding addresses only with `force`).
   */
  async removeReport(cidr: string, opts: { force?: boolean } = {}): Promise<PoolRemoval> {
    const c = PoolStore.parse(cidr);
    const key = keys.pool(c.family, c.text);
    const existing = await this.ds.get(key, json(PoolValue));
    const owners = await this.ownersLostOnRemoval(c.text);
    if (owners.length && !opts.force) {
      const who = owners
        .slice(0, 10)
        .map((o) => `${o.address} (${o.attrs.container ? `container ${o.attrs.container.slice(0, 12)}, ` : ''}handle ${o.handle})`)
        .join(', ');
      const what = existing ? `pool ${c.text} has` : `pool ${c.text} is gone but its removal was cut short: its blocks still hold`;
      throw new DatastoreError(
        'REFUSED',
        `${what} ${owners.length} allocated address${owners.length === 1 ? '' : 'es'}: ${who}${owners.length > 10 ? ', ...' : ''}; release them or use --force`,
        key,
      );
    }
    // The pool key goes first: a block claim compares it (ipam/claim.ts), so
    // no new block appears in the pool while its blocks are being removed.
    if (existing) await this.ds.delete(key);
    const blocks = await this.removeBlocks(c);
    if (existing || blocks) await this.reattribute(c.family);
    return { existed: existing !== undefined, blocks, released: owners.length };
  }

  /** Removes the blocks (and pending claims) inside `c` that no remaining pool contains; returns how many blocks. */
  private async removeBlocks(c: Cidr): Promise<number> {
    const rest = await this.listFamily(c.family);
    const blocks = (await this.blocks(c.family)).filter((b) => removedWith(c, parseCidr(b.value.cidr), rest));
    for (const b of blocks) await this.removeBlock(b);
    // Pending claims inside the pool that never became blocks (those inside a remaining pool stay).
    for (const k of await this.ds.listKeys(keys.affinitiesRoot())) {
      const a = parseAffinityKey(k);
      if (a && a.family === c.family && removedWith(c, parseCidr(a.cidr), rest)) await this.ds.delete(k);
    }
    return blocks.length;
  }

  /**
   * Sets each block's `pool` field to the narrowest pool containing it, one
   * revision-guarded write per block that changes (a concurrent allocation
   * makes it re-read). Blocks outside every pool are left as they are.
   */
  private async reattribute(family: Family): Promise<void> {
    const pools = await this.listFamily(family);
    for (const first of await this.blocks(family)) {
      let b: Versioned<BlockValue> | undefined = first;
      for (let attempt = 0; b && attempt < CAS_RETRIES; attempt++) {
        const pool = narrowestPool(parseCidr(b.value.cidr), pools)?.cidr;
        if (!pool || pool === b.value.pool) break;
        const r = await this.ds.cas(`attributing block ${b.value.cidr} to pool ${pool}`, [{ key: b.key, modRevision: b.modRevision }], [
          { key: b.key, value: { ...b.value, pool } satisfies BlockValue },
        ]);
        if (r.succeeded) break;
        b = await this.ds.get(b.key, json(BlockValue));
        await backoff(attempt);
      }
    }
  }

  /**
   * Deletes one block together with its handles' references to it and its
   * affinity, in one transaction guarded by all their revisions: an
   * allocation that slips into the block meanwhile makes it re-read and retry.
   */
  private async removeBlock(first: Versioned<BlockValue>): Promise<void> {
    let b: Versioned<BlockValue> | undefined = first;
    for (let attempt = 0; b && attempt < CAS_RETRIES; attempt++) {
      const block: Versioned<BlockValue> = b;
      const handleKeys = [...new Set(block.value.allocations.filter((a) => a !== null).map((a) => keys.handle(a!.h)))];
      const current = await this.ds.getRaw(handleKeys);
      const puts: Put[] = [];
      const deletes = [block.key];
      for (const [key, kv] of current) {
        if (kv.raw === undefined) continue;
        const h = this.ds.decode(key, kv.raw, json(HandleValue));
        const rest = { ...h.blocks };
        delete rest[block.value.cidr];
        if (Object.keys(rest).length) puts.push({ key, value: { ...h, blocks: rest } });
        else deletes.push(key);
      }
      const host = block.value.affinity?.startsWith('host:') ? block.value.affinity.slice(5) : undefined;
      if (host) deletes.push(keys.affinity(host, parseCidr(block.value.cidr).family as Family, block.value.cidr));
      const r = await this.ds.cas(
        `removing block ${block.value.cidr}`,
        [{ key: block.key, modRevision: block.modRevision }, ...[...current.values()].map((kv) => ({ key: kv.key, modRevision: kv.modRevision }))],
        puts,
        deletes,
      );
      if (r.succeeded) return;
      b = await this.ds.get(block.key, json(BlockValue));
      await backoff(attempt);
    }
    if (b) throw new DatastoreError('CONFLICT', `removing block ${b.value.cidr}: still conflicting after ${CAS_RETRIES} attempts`, b.key);
  }

  /**
   * The node's first-start default: when no pool of any family exists,
   * creates DEFAULT_POOLS. Returns the CIDRs it created (empty if pools existed).
   */
  async ensureDefaultPools(): Promise<string[]> {
    const existing = await this.list();
    if (existing.length) return [];
    const created: string[] = [];
    for (const p of DEFAULT_POOLS) {
      const pool = await this.add(p);
      created.push(pool.cidr);
    }
    return created;
  }
}

/** The owners of addresses in the given blocks. */
function ownersIn(blocks: Versioned<BlockValue>[]): PoolOwner[] {
  const out: PoolOwner[] = [];
  for (const b of blocks) {
    const bc = parseCidr(b.value.cidr);
    b.value.allocations.forEach((a, ord) => {
      if (a) out.push({ handle: a.h, address: addressAt(bc, ord), attrs: a.a ?? {} });
    });
  }
  return out;
}

/** Pure: whether a block (or claim) inside `removed` goes with it, i.e. no remaining pool contains it. */
export function removedWith(removed: Cidr, block: Cidr, remaining: readonly Pool[]): boolean {
  return cidrWithin(block, removed) && !narrowestPool(block, remaining);
}

function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

