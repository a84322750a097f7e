// The datastore syncer: one (paged) read of everything under /calico/v1/ at one
// revision, then an etcd watch from the next revision, applied incrementally.
// Whenever the watch cannot be trusted to continue (etcd cancelled it, e.g.
// because the revision it needs was compacted; the stream broke because a
// member went away), it drops the watch, reads a fresh snapshot (retrying
// with backoff while etcd is unreachable) and watches again from there.
//
//   const syncer = new Syncer(datastore, log);   // a Component: start() reads the first snapshot
//   syncer.subscribe((e) => render(e.snapshot)); // 'snapshot' at once and after every resync, then 'update's
//
// Snapshots are immutable: an update replaces the maps it changes (see
// state.ts), so a consumer may keep and compare old ones.
import type { Watcher } from 'etcd3';
import type { IWatchResponse } from 'etcd3/lib/rpc';
import type { Logger } from 'pino';
import type { Datastore } from '../datastore/datastore';
import type { Component } from '../lifecycle/component';
import { DecodeKv, KeyChange, SERVED_PREFIX, SyncState } from './state';
import type { DatastoreSnapshot, DatastoreSyncer, SyncerEvent } from './types';

export interface SyncerOptions {
  /** First retry delay after a failed resync; doubles up to retryMaxMs. Default 100 ms. */
  retryInitialMs?: number;
  /** Default 2000 ms. */
  retryMaxMs?: number;
}

type Listener = (e: SyncerEvent) => void;

/** How long stop() waits for etcd to confirm the watch cancel before giving up on it. */
const CANCEL_BOUND_MS = 300;

export class Syncer implements Component, DatastoreSyncer {
  readonly name = 'syncer';
  private readonly log: Logger;
  private readonly decode: DecodeKv;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly listeners = new Set<Listener>();
  private state: SyncState | undefined;
  private watcher: Watcher | undefined;
  /** Bumped whenever the watch is dropped: events of an older watch are ignored. */
  private generation = 0;
  private pending: KeyChange[] = [];
  /** The revision of the snapshot the current watch started after. */
  private snapshotRevision = 0n;
  private lastEventRevision = '0';
  private flushScheduled = false;
  private resyncReason: string | undefined;
  private resyncing = false;
  private failures = 0;
  private wake: (() => void) | undefined;
  private stopped = false;
  private readonly synced: Promise<DatastoreSnapshot>;
  private resolveSynced!: (s: DatastoreSnapshot) => void;
  private rejectSynced!: (e: Error) => void;

  constructor(
    private readonly ds: Datastore,
    log: Logger,
    opts: SyncerOptions = {},
  ) {
    this.log = log.child({ component: 'syncer' });
    this.retryInitialMs = opts.retryInitialMs ?? 100;
    this.retryMaxMs = opts.retryMaxMs ?? 2000;
    this.decode = (kv, codec) => ds.decodeAll([kv], codec)[0]?.value;
    this.synced = new Promise((resolve, reject) => {
      this.resolveSynced = resolve;
      this.rejectSynced = reject;
    });
    this.synced.catch(() => undefined);
  }

  /**
   * Reads the first snapshot and starts following the watch. Fails (naming
   * the etcd endpoints) when that first read fails; once synced, every later
   * failure is retried until stop().
   */
  async start(): Promise<void> {
    if (this.stopped) throw new Error('datastore syncer: start() after stop()');
    await this.syncOnce('start');
  }

  /** Idempotent and bounded (well under a second) even while etcd is unreachable. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.listeners.clear();
    this.wake?.();
    this.rejectSynced(new Error('datastore syncer stopped before its first snapshot'));
    await this.dropWatch(CANCEL_BOUND_MS);
  }

  subscribe(listener: Listener): () => void {
    if (this.stopped) return () => undefined;
    this.listeners.add(listener);
    if (this.state) this.deliver(listener, { type: 'snapshot', snapshot: this.state.snapshot() });
    return () => {
      this.listeners.delete(listener);
    };
  }

  current(): DatastoreSnapshot | undefined {
    return this.state?.snapshot();
  }

  whenSynced(): Promise<DatastoreSnapshot> {
    return this.synced;
  }

  /** One snapshot read, published as a 'snapshot' event, and a watch from the revision after it. */
  private async syncOnce(reason: string): Promise<void> {
    const generation = this.generation;
    const t0 = Date.now();
    // Decoded page by page as etcd answers (the next page already asked for).
    const build = SyncState.builder(this.decode);
    let count = 0;
    let buildMs = 0;
    const r = await this.ds.rangePrefixPages(SERVED_PREFIX, false, (kvs) => {
      const b0 = performance.now();
      count += kvs.length;
      build.add(kvs);
      buildMs += performance.now() - b0;
    });
    // stop() or another resync request came in while reading.
    if (this.stopped || generation !== this.generation) return;
    const revision = r.header.revision;
    this.state = build.done(revision);
    this.pending = [];
    this.snapshotRevision = BigInt(revision);
    this.lastEventRevision = revision;
    const snapshot = this.state.snapshot();
    // ms: the whole read; buildMs of it decoding and building the maps (while etcd answers the next page).
    this.log.info({ reason, revision, keys: count, ms: Date.now() - t0, buildMs: Math.round(buildMs) }, 'datastore snapshot read');
    this.resolveSynced(snapshot);
    this.emit({ type: 'snapshot', snapshot });
    if (this.stopped) return; // a listener may stop us
    this.watchFrom(BigInt(revision) + 1n);
  }

  private watchFrom(revision: bigint): void {
    const generation = this.generation;
    // watcher() rather than create(): the handlers must be in place before
    // the first response, which may arrive in the same tick as 'connected'.
    const w = this.ds.client.watch().prefix(SERVED_PREFIX).startRevision(revision.toString()).watcher();
    this.watcher = w;
    let connected = false;
    w.on('data', (res: IWatchResponse) => {
      if (generation === this.generation) this.receive(res);
    });
    w.on('connected', () => {
      connected = true;
      if (generation === this.generation) this.failures = 0;
    });
    // A watch that never got going counts as a failed attempt, so a member
    // that serves reads but not watches is retried with backoff, not in a loop.
    const lost = (reason: string): void => {
      if (generation !== this.generation) return;
      if (!connected) this.failures++;
      this.requestResync(reason);
    };
    w.on('disconnected', (err: Error) => lost(`watch stream lost: ${err.message}`));
    // etcd cancels a watch whose next revision has been compacted away (and
    // the client reports every cancel it did not ask for as an error).
    w.on('error', (err: Error) =>
      lost(`watch cancelled by etcd (revision ${revision} compacted, or the watch refused): ${err.message}`),
    );
  }

  private receive(res: IWatchResponse): void {
    for (const ev of res.events) {
      // A watch starts after the snapshot; anything at or before it is already in.
      // (Several events of one transaction share a revision.)
      if (BigInt(ev.kv.mod_revision) <= this.snapshotRevision) continue;
      this.lastEventRevision = ev.kv.mod_revision;
      this.pending.push({ key: ev.kv.key.toString(), kv: ev.type === 'Put' ? ev.kv : undefined });
    }
    if (this.pending.length && !this.flushScheduled) {
      // Responses that arrive together are applied and reported as one update.
      this.flushScheduled = true;
      const generation = this.generation;
      setImmediate(() => {
        this.flushScheduled = false;
        if (generation === this.generation) this.flush();
      });
    }
  }

  private flush(): void {
    if (!this.state || !this.pending.length || this.stopped) return;
    const batch = this.pending;
    this.pending = [];
    const t0 = performance.now();
    const { changed, keys } = this.state.apply(batch, this.lastEventRevision);
    this.log.debug({ revision: this.lastEventRevision, events: batch.length, ms: performance.now() - t0 }, 'watch events applied');
    this.emit({ type: 'update', snapshot: this.state.snapshot(), changed, keys });
  }

  private requestResync(reason: string): void {
    if (this.stopped) return;
    void this.dropWatch(0);
    this.resyncReason = reason;
    this.log.warn({ reason }, 'datastore syncer: resyncing');
    if (!this.resyncing) void this.resyncLoop();
  }

  private async resyncLoop(): Promise<void> {
    this.resyncing = true;
    try {
      while (!this.stopped && this.resyncReason !== undefined) {
        const reason = this.resyncReason;
        this.resyncReason = undefined;
        if (this.failures > 0) await this.pause(this.retryDelay(this.failures));
        if (this.stopped) return;
        try {
          await this.syncOnce(reason);
        } catch (e) {
          this.failures++;
          this.resyncReason ??= reason;
          this.log.warn({ err: (e as Error).message, attempt: this.failures }, 'datastore syncer: resync failed; retrying');
        }
      }
    } finally {
      this.resyncing = false;
    }
  }

  /** Stops following the current watch (events of it are ignored from now on). */
  private async dropWatch(boundMs: number): Promise<void> {
    this.generation++;
    this.pending = [];
    const w = this.watcher;
    this.watcher = undefined;
    if (!w) return;
    // Its handlers stay (they check the generation): an 'error' nobody
    // listens to would be thrown by the EventEmitter.
    const cancelled = Promise.resolve()
      .then(() => w.cancel())
      .catch(() => undefined);
    if (boundMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([cancelled, new Promise<void>((r) => (timer = setTimeout(r, boundMs)))]);
      clearTimeout(timer);
    }
  }

  private retryDelay(failures: number): number {
    const d = Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** Math.min(failures - 1, 20));
    return d / 2 + (Math.random() * d) / 2;
  }

  /** A sleep that stop() cuts short. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private emit(e: SyncerEvent): void {
    for (const l of [...this.listeners]) this.deliver(l, e);
  }

  private deliver(l: Listener, e: SyncerEvent): void {
    try {
      l(e);
    } catch (err) {
      this.log.error({ err: (err as Error).message, event: e.type, revision: e.snapshot.revision }, 'datastore syncer: a listener threw');
    }
  }
}
