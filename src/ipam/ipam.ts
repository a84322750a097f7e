// The Ipam of ./types.ts on etcd block IPAM. One instance per process:
// allocations for one host are single-flighted (requests that arrive while
// a batch is in flight go out together in the next one), so a host's
// allocators do not burn CAS retries against each other.
import type { Logger } from 'pino';
import type { IpamMetrics, IpamOp } from '../metrics/node-metrics';
import { Datastore, json } from '../datastore/datastore';
import { checkId, keys } from '../datastore/keys';
import { BlockValue, HandleValue } from '../datastore/schemas';
import { allocateBatch, FamilyRequest, Pending } from './allocate';
import { toAllocation } from './block';
import { blockOf, canonicalAddress, ordinalOf, parseAddress, parseCidr } from '../address/cidr';
import { IpamContext, toIpamError } from './context';
import * as gc from './gc';
import { releaseAddress, releaseByHandle, setAttrs } from './release';
import { AllocateRequest, Allocation, Family, Ipam, IpamError, OrphanBlock, StaleAffinity } from './types';

export interface EtcdIpamOptions {
  log?: Logger;
  /** Most requests of one host written in one transaction (etcd allows 128 ops). Default 32. */
  maxBatch?: number;
  /** Allocations, releases, errors and their latency (the node's metrics). */
  metrics?: IpamMetrics;
}

export class EtcdIpam implements Ipam {
  private readonly ctx: IpamContext;
  private readonly queues = new Map<string, { items: Pending[]; running: boolean }>();
  private readonly maxBatch: number;
  private readonly metrics?: IpamMetrics;

  constructor(ds: Datastore, opts: EtcdIpamOptions = {}) {
    this.ctx = new IpamContext(ds, opts.log);
    this.maxBatch = Math.max(1, Math.min(opts.maxBatch ?? 32, 60));
    this.metrics = opts.metrics;
  }

  allocate(req: AllocateRequest): Promise<Allocation[]> {
    return this.measured('allocate', this.allocateQueued(req), (a) => a.length);
  }

  /** Records an operation's time and outcome (addresses it allocated or freed, or its error code). */
  private measured<T>(op: IpamOp, p: Promise<T>, addresses: (r: T) => number): Promise<T> {
    const m = this.metrics;
    if (!m) return p;
    const started = performance.now();
    return p.then(
      (r) => (m.done(op, (performance.now() - started) / 1000, addresses(r)), r),
      (e) => {
        m.done(op, (performance.now() - started) / 1000, 0, e instanceof IpamError ? e.code : 'UNKNOWN');
        throw e;
      },
    );
  }

  private allocateQueued(req: AllocateRequest): Promise<Allocation[]> {
    let families: FamilyRequest[];
    try {
      families = validate(req);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<Allocation[]>((resolve, reject) => {
      const host = req.host;
      let q = this.queues.get(host);
      if (!q) {
        q = { items: [], running: false };
        this.queues.set(host, q);
      }
      q.items.push({ handle: req.handle, host, families, attrs: { ...(req.attrs ?? {}) }, resolve, reject });
      if (!q.running) void this.drain(host, q);
    });
  }

  private async drain(host: string, q: { items: Pending[]; running: boolean }): Promise<void> {
    q.running = true;
    try {
      while (q.items.length) {
        const batch = q.items.splice(0, this.maxBatch);
        try {
          await allocateBatch(this.ctx, host, batch);
          for (const f of new Set(batch.flatMap((p) => p.families.map((x) => x.family)))) this.ctx.maybePrefetch(host, f);
        } catch (e) {
          // Requests already answered ignore a second settlement.
          const err = toIpamError(e);
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      q.running = false;
    }
  }

  /** Resolves once no allocation is queued and no background block claim is running (tests, shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [...this.queues.values()].some((q) => q.running || q.items.length);
      const pending = [...this.ctx.prefetches.values()];
      if (!busy && !pending.length) return;
      await Promise.all(pending);
      if (busy) await new Promise((r) => setTimeout(r, 5));
    }
  }

  releaseByHandle(handle: string): Promise<number> {
    return this.measured('release', wrap(() => releaseByHandle(this.ctx, handle)), (n) => n);
  }

  releaseAddress(address: string, handle: string): Promise<boolean> {
    return this.measured('release', wrap(() => releaseAddress(this.ctx, canonicalOrInvalid(address), handle)), (freed) => (freed ? 1 : 0));
  }

  setAttrs(handle: string, attrs: Record<string, string>): Promise<void> {
    return wrap(() => setAttrs(this.ctx, handle, attrs));
  }

  listByHost(host: string): Promise<Allocation[]> {
    return wrap(async () => (await gc.listAllocations(this.ctx, { host })).map(strip));
  }

  listByHandle(handle: string): Promise<Allocation[]> {
    return wrap(async () => {
      const h = await this.ctx.ds.get(keys.handle(handle), json(HandleValue));
      if (!h) return [];
      const out: Allocation[] = [];
      for (const cidr of Object.keys(h.value.blocks)) {
        const c = parseCidr(cidr);
        const b = await this.ctx.ds.get(keys.block(c.family, c.text), json(BlockValue));
        b?.value.allocations.forEach((a, i) => {
          if (a?.h === handle) out.push(strip(toAllocation(b.value, i)));
        });
      }
      return out.sort((a, b) => a.family - b.family);
    });
  }

  lookup(address: string): Promise<Allocation | undefined> {
    return wrap(async () => {
      const a = parseAddress(canonicalOrInvalid(address));
      const bc = blockOf(a.family, a.value);
      const b = await this.ctx.ds.get(keys.block(bc.family, bc.text), json(BlockValue));
      const ord = ordinalOf(bc, a.value);
      return b?.value.allocations[ord] ? strip(toAllocation(b.value, ord)) : undefined;
    });
  }

  // ----- garbage collection hooks (policy is the caller's: see ./gc.ts) -----

  /** Every allocation (of one host, when given) with its sequence number and allocation time. */
  listAllocations(filter: { host?: string; family?: Family } = {}): Promise<gc.AllocationRecord[]> {
    return wrap(() => gc.listAllocations(this.ctx, filter));
  }

  /** Allocations whose handle `owned` does not vouch for, optionally older than a minimum age. */
  findUnowned(
    owned: (handle: string, a: gc.AllocationRecord) => boolean,
    opts: { host?: string; olderThanMs?: number } = {},
  ): Promise<gc.AllocationRecord[]> {
    return wrap(() => gc.findUnowned(this.ctx, owned, opts));
  }

  /** Releases records only where handle and sequence number still match (re-validated at release). */
  releaseIfUnchanged(records: Pick<gc.AllocationRecord, 'address' | 'handle' | 'seq'>[]): Promise<number> {
    return this.measured('release', wrap(() => gc.releaseIfUnchanged(this.ctx, records)), (n) => n);
  }

  /** Releases everything of handles the caller has found dead. Returns addresses freed. */
  async releaseHandles(handles: Iterable<string>): Promise<number> {
    let n = 0;
    for (const h of handles) n += await this.releaseByHandle(h);
    return n;
  }

  /** Confirms or removes block claims left pending for at least minAgeMs (a process died mid-claim). */
  cleanupPendingAffinities(minAgeMs: number): Promise<{ confirmed: number; removed: number }> {
    return wrap(() => gc.cleanupPendingAffinities(this.ctx, minAgeMs));
  }

  listStaleAffinities(): Promise<StaleAffinity[]> {
    return wrap(() => gc.listStaleAffinities(this.ctx));
  }

  settleAffinity(a: StaleAffinity): Promise<'confirmed' | 'removed' | 'changed'> {
    return wrap(() => gc.settleAffinity(this.ctx, a));
  }

  listOrphanBlocks(): Promise<OrphanBlock[]> {
    return wrap(() => gc.listOrphanBlocks(this.ctx));
  }

  removeOrphanBlock(b: OrphanBlock): Promise<'removed' | 'changed'> {
    return wrap(() => gc.removeOrphanBlock(this.ctx, b));
  }

  /** Blocks against handles: empty `problems` when consistent. */
  audit(): Promise<gc.AuditReport> {
    return wrap(() => gc.audit(this.ctx));
  }
}

function strip(a: gc.AllocationRecord): Allocation {
  const { seq: _s, allocatedAt: _t, ...rest } = a;
  return rest;
}

async function wrap<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toIpamError(e);
  }
}

function canonicalOrInvalid(address: string): string {
  try {
    return canonicalAddress(address);
  } catch (e) {
    throw new IpamError('INVALID', (e as Error).message);
  }
}

function validate(req: AllocateRequest): FamilyRequest[] {
  try {
    checkId('handle', req.handle);
    checkId('host name', req.host);
  } catch (e) {
    throw new IpamError('INVALID', (e as Error).message);
  }
  const out: FamilyRequest[] = [];
  for (const [family, want] of [
    [4, req.ipv4],
    [6, req.ipv6],
  ] as [Family, string | undefined][]) {
    if (want === undefined) continue;
    if (want === 'auto') {
      out.push({ family, want });
      continue;
    }
    let a: { family: Family };
    try {
      a = parseAddress(want);
    } catch {
      throw new IpamError('INVALID', `"${want}" is not a valid IPv${family} address (use "auto" or an address)`);
    }
    if (a.family !== family) throw new IpamError('INVALID', `"${want}" is not an IPv${family} address`);
    out.push({ family, want: canonicalAddress(want) });
  }
  if (!out.length) throw new IpamError('INVALID', `allocation for ${req.handle}: ask for ipv4 and/or ipv6`);
  return out;
}
