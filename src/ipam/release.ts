// Releasing addresses: by handle (everything it owns, together), or one
// address only if the given handle (and sequence number) still owns it.
// Each is one transaction over the handle and the blocks concerned, guarded
// by their mod revisions; a conflict re-plans from the values it returns.
import { backoff, CAS_RETRIES, Put } from '../datastore/datastore';
import { DatastoreError } from '../datastore/errors';
import { keys } from '../datastore/keys';
import type { BlockValue, HandleValue } from '../datastore/schemas';
import { blockOf, ordinalOf, parseAddress, parseCidr } from '../address/cidr';
import { cloneBlock, releaseHandle, releaseOrdinal } from './block';
import type { CachedBlock, HandleState, IpamContext } from './context';

/**
 * Releases every address of the handle. Idempotent: 0 when it owns nothing.
 * Two round trips when the blocks are cached: read the handle, then one
 * transaction guarded by the handle's and every listed block's revision
 * (a stale cached block fails the compare and comes back fresh).
 */
export async function releaseByHandle(ctx: IpamContext, handle: string): Promise<number> {
  const hk = keys.handle(handle);
  let h = ctx.decodeHandle((await ctx.ds.getRaw([hk])).get(hk)!);
  for (let attempt = 0; attempt < CAS_RETRIES; attempt++) {
    if (!h.value) return 0;
    const blockKeys = Object.keys(h.value.blocks).map((c) => ctx.blockKeyOf(parseCidr(c)));
    await ctx.readBlocks(blockKeys.filter((k) => !ctx.blocks.has(k)));
    const blocks = blockKeys.map((k) => ctx.blocks.get(k)!);
    let freed = 0;
    const puts: Put[] = [];
    const next = new Map<string, BlockValue>();
    for (const b of blocks) {
      if (!b.value) continue;
      const v = cloneBlock(b.value);
      const n = releaseHandle(v, handle).length;
      if (n) {
        freed += n;
        next.set(b.key, v);
        puts.push({ key: b.key, value: v });
      }
    }
    const r = await ctx.ds.cas(
      `releasing addresses of ${handle}`,
      [{ key: hk, modRevision: h.rev }, ...blocks.map((b) => ({ key: b.key, modRevision: b.rev }))],
      puts,
      [hk],
    );
    if (r.succeeded) {
      for (const [k, v] of next) ctx.setBlock(k, v, r.revision);
      return freed;
    }
    for (const kv of r.current.values()) {
      if (kv.key === hk) h = ctx.decodeHandle(kv);
      else ctx.setBlockRaw(kv);
    }
    await backoff(attempt);
  }
  throw new DatastoreError('CONFLICT', `releasing addresses of ${handle}: still conflicting after ${CAS_RETRIES} attempts`);
}

/**
 * Releases one address if it is still owned by `handle` and, when `seq` is
 * given, still carries that sequence number (the GC passes the one it saw,
 * so an address re-allocated since, even to the same handle, stays).
 * Idempotent: false when there was nothing of this owner to free.
 */
export async function releaseAddress(ctx: IpamContext, address: string, handle: string, seq?: number): Promise<boolean> {
  const a = parseAddress(address);
  const bc = blockOf(a.family, a.value);
  const bk = ctx.blockKeyOf(bc);
  const hk = keys.handle(handle);
  const ord = ordinalOf(bc, a.value);
  let m = await ctx.ds.getRaw([bk, hk]);
  for (let attempt = 0; attempt < CAS_RETRIES; attempt++) {
    const b = ctx.setBlockRaw(m.get(bk)!);
    const h: HandleState = ctx.decodeHandle(m.get(hk)!);
    if (!b.value) return false;
    const v = cloneBlock(b.value);
    if (!releaseOrdinal(v, ord, handle, seq)) return false;
    const puts: Put[] = [{ key: bk, value: v }];
    const deletes: string[] = [];
    if (h.value) {
      const blocks = { ...h.value.blocks };
      blocks[v.cidr] = (blocks[v.cidr] ?? 1) - 1;
      if (blocks[v.cidr] <= 0) delete blocks[v.cidr];
      if (Object.keys(blocks).length) puts.push({ key: hk, value: { ...h.value, blocks } satisfies HandleValue });
      else deletes.push(hk);
    }
    const r = await ctx.ds.cas(
      `releasing ${address} of ${handle}`,
      [
        { key: bk, modRevision: b.rev },
        { key: hk, modRevision: h.rev },
      ],
      puts,
      deletes,
    );
    if (r.succeeded) {
      ctx.setBlock(bk, v, r.revision);
      return true;
    }
    m = r.current;
    await backoff(attempt);
  }
  throw new DatastoreError('CONFLICT', `releasing ${address} of ${handle}: still conflicting after ${CAS_RETRIES} attempts`);
}

/** Merges attrs into every allocation of the handle. */
export async function setAttrs(ctx: IpamContext, handle: string, attrs: Record<string, string>): Promise<void> {
  const hk = keys.handle(handle);
  for (let attempt = 0; attempt < CAS_RETRIES; attempt++) {
    const h = ctx.decodeHandle((await ctx.ds.getRaw([hk])).get(hk)!);
    if (!h.value) return;
    const blocks = await readFresh(ctx, Object.keys(h.value.blocks).map((c) => ctx.blockKeyOf(parseCidr(c))));
    const next = new Map<string, BlockValue>();
    for (const b of blocks) {
      if (!b.value) continue;
      const v = cloneBlock(b.value);
      v.allocations.forEach((al) => {
        if (al?.h === handle) al.a = { ...(al.a ?? {}), ...attrs };
      });
      next.set(b.key, v);
    }
    const r = await ctx.ds.cas(
      `setting attributes of ${handle}`,
      [{ key: hk, modRevision: h.rev }, ...[...next.keys()].map((k) => ({ key: k, modRevision: ctx.blocks.get(k)!.rev }))],
      [...next].map(([key, value]) => ({ key, value })),
    );
    if (r.succeeded) {
      for (const [k, v] of next) ctx.setBlock(k, v, r.revision);
      return;
    }
    for (const kv of r.current.values()) if (kv.key !== hk) ctx.setBlockRaw(kv);
    await backoff(attempt);
  }
  throw new DatastoreError('CONFLICT', `setting attributes of ${handle}: still conflicting after ${CAS_RETRIES} attempts`);
}

async function readFresh(ctx: IpamContext, blockKeys: string[]): Promise<CachedBlock[]> {
  await ctx.readBlocks(blockKeys);
  return blockKeys.map((k) => ctx.blocks.get(k)!);
}
