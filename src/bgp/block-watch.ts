// Follows every IPAM block in the datastore (/calico/ipam/v2/assignment/,
// which the syncer does not serve) and keeps what they say about route
// ownership (./routes-owned.ts): one read, then an etcd watch from the
// revision after it. Every allocation rewrites its block, but only a change
// of ownership (a block claimed or released, an address borrowed or given
// back) is reported. A watch that breaks (compaction, a member gone) is
// dropped and everything read again.
import type { Watcher } from 'etcd3';
import type { IKeyValue, IWatchResponse } from 'etcd3/lib/rpc';
import type { Logger } from 'pino';
import type { Datastore } from '../datastore/datastore';
import { json } from '../datastore/datastore';
import { keys, parseBlockKey } from '../datastore/keys';
import { BlockValue } from '../datastore/schemas';
import { blockOwnership, BlockOwnership, hostRoutesFrom } from './routes-owned';
import type { HostRoutes } from './types';

export interface BlockWatchOptions {
  ds: Datastore;
  log: Logger;
  /** Called after the ownership of some block changed (or after a resync that changed anything). */
  onChange: () => void;
  /** Delay before a resync after the watch broke; doubles up to 5 s. Default 200 ms. */
  retryMs?: number;
}

export class BlockWatch {
  private readonly blocks = new Map<string, BlockOwnership>();
  private routesCache?: Record<string, HostRoutes>;
  private watcher?: Watcher;
  private generation = 0;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  private failures = 0;

  constructor(private readonly o: BlockWatchOptions) {}

  /** The first read, then the watch; a failed read is retried (until then every host holds nothing). */
  async start(): Promise<void> {
    this.stopped = false;
    try {
      await this.sync();
    } catch (e) {
      this.o.log.warn({ err: (e as Error).message }, 'BGP: reading the IPAM blocks failed; retrying');
      this.scheduleResync();
    }
  }

  /** What each host holds, from the latest state of every block. */
  routes(): Record<string, HostRoutes> {
    return (this.routesCache ??= hostRoutesFrom(this.blocks.values()));
  }


  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.dropWatch();
  }

  private async sync(): Promise<void> {
    await this.dropWatch();
    const generation = this.generation;
    const r = await this.o.ds.rangePrefix(keys.blocksRoot(), false);
    if (this.stopped || generation !== this.generation) return;
    const before = JSON.stringify(this.routes());
    this.blocks.clear();
    for (const kv of r.kvs) this.apply(kv.key.toString(), kv);
    this.routesCache = undefined;
    if (JSON.stringify(this.routes()) !== before) this.o.onChange();
    this.watchFrom(BigInt(r.header.revision) + 1n);
  }

  /** Applies one key's state; true when the ownership changed. */
  private apply(key: string, kv: IKeyValue | undefined): boolean {
    if (!parseBlockKey(key)) return false;
    const old = this.blocks.get(key);
    let now: BlockOwnership | undefined;
    if (kv) {
      const v = this.o.ds.decodeAll([kv], json(BlockValue))[0];
      // An invalid block (reported by the datastore) holds nothing for anyone.
      now = v && blockOwnership(v.value);
    }
    if (now) this.blocks.set(key, now);
    else this.blocks.delete(key);
    return JSON.stringify(old) !== JSON.stringify(now);
  }

  private watchFrom(revision: bigint): void {
    const generation = this.generation;
    const w = this.o.ds.client.watch().prefix(keys.blocksRoot()).startRevision(revision.toString()).watcher();
    this.watcher = w;
    w.on('connected', () => {
      if (generation === this.generation) this.failures = 0;
    });
    w.on('data', (res: IWatchResponse) => {
      if (generation !== this.generation) return;
      let changed = false;
      for (const ev of res.events) changed = this.apply(ev.kv.key.toString(), ev.type === 'Put' ? ev.kv : undefined) || changed;
      if (changed) {
        this.routesCache = undefined;
        this.o.onChange();
      }
    });
    const lost = (why: string) => {
      if (generation !== this.generation || this.stopped) return;
      this.o.log.warn({ reason: why }, 'BGP: the watch on IPAM blocks broke; reading them again');
      void this.dropWatch();
      this.scheduleResync();
    };
    w.on('disconnected', (e: Error) => lost(`watch stream lost: ${e.message}`));
    w.on('error', (e: Error) => lost(`watch cancelled: ${e.message}`));
  }

  private scheduleResync(): void {
    if (this.stopped || this.retryTimer) return;
    const base = this.o.retryMs ?? 200;
    const delay = Math.min(5000, base * 2 ** Math.min(this.failures++, 10));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.sync().catch((e) => {
        this.o.log.warn({ err: (e as Error).message }, 'BGP: reading the IPAM blocks failed; retrying');
        this.scheduleResync();
      });
    }, delay);
    this.retryTimer.unref();
  }

  private async dropWatch(): Promise<void> {
    this.generation++;
    const w = this.watcher;
    this.watcher = undefined;
    if (!w) return;
    // The handlers stay (they check the generation): an unheard 'error' would throw.
    let t: NodeJS.Timeout | undefined;
    await Promise.race([Promise.resolve().then(() => w.cancel()).catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, 300)))]);
    clearTimeout(t);
  }
}
