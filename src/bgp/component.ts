// The node's BGP component: follows the datastore syncer (hosts, pools,
// /calico/v1/config BGP keys) and this host's affine IPAM blocks, renders
// bird.conf (./render.ts, pure) and hands it to the BIRD supervisor
// (./bird.ts), which loads it only after `bird -p` passed.
//
// The syncer does not serve /calico/ipam/v2, so the blocks affine to this
// host are read from the datastore: at start, whenever pools, hosts or
// config change, shortly after this host's endpoints change (a new endpoint
// may sit in a block claimed a moment ago), and every refreshMs as a
// backstop (blocks released by GC, claims by a sibling process).
//
// Every host's blocks and borrowed addresses (what each mesh peer may
// announce, ./routes-owned.ts) come from a watch on all blocks
// (./block-watch.ts): a block another host claims is in this host's import
// filter for that peer within a render, and BIRD re-filters what the peer
// sent (kept before the filter: `import table on`), so an announcement that
// was refused a moment before the claim reached us comes in then.
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { Datastore } from '../datastore/datastore';
import { json } from '../datastore/datastore';
import { keys, parseAffinityKey, parseEndpointKey } from '../datastore/keys';
import { AffinityValue } from '../datastore/schemas';
import type { Family } from '../address/cidr';
import type { Component } from '../lifecycle/component';
import { SerialPass } from '../lifecycle/serial-pass';
import type { DatastoreSnapshot, DatastoreSyncer, SyncerEvent } from '../syncer/types';
import { BirdConfigError, BirdSupervisor } from './bird';
import { BlockWatch } from './block-watch';
import { birdInputFromSnapshot } from './input';
import { BirdRenderError, renderBirdConfig } from './render';

export interface BgpComponentOptions {
  hostname: string;
  stateDir: string;
  datastore: Datastore;
  syncer: DatastoreSyncer;
  log: Logger;
  /** Default: a supervisor on <stateDir>/bird running bird in this process's network namespace. */
  supervisor?: BirdSupervisor;
  /** Delay between a change and the render it causes (changes in between coalesce). Default 30 ms. */
  debounceMs?: number;
  /** Backstop re-read of this host's affine blocks. Default 5000 ms. */
  refreshMs?: number;
  /** The subnet of the interface holding this host's --ip (cross-subnet IP-in-IP pools); asked at every render. */
  localSubnet?: () => string | undefined;
}

/** Blocks affine to `host` and confirmed (a pending claim owns nothing yet), both families, sorted. */
export async function readAffineBlocks(ds: Datastore, host: string): Promise<string[]> {
  const out: string[] = [];
  for (const family of [4, 6] as Family[]) {
    const vs = await ds.list(keys.hostAffinitiesDir(host, family), json(AffinityValue));
    for (const v of vs) {
      const k = parseAffinityKey(v.key);
      if (k && k.host === host && v.value.state === 'confirmed') out.push(k.cidr);
    }
  }
  return out.sort();
}

export class BgpComponent implements Component {
  readonly name = 'bgp';
  readonly supervisor: BirdSupervisor;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly refreshMs: number;
  private unsubscribe?: () => void;
  private snapshot?: DatastoreSnapshot;
  private blocks: string[] = [];
  private birdStarted = false;
  private stopped = false;
  private refresher?: NodeJS.Timeout;
  /** The next pass must re-read the affine blocks. */
  private rereadBlocks = true;
  /** One render/apply at a time; a change during one schedules another. */
  private readonly passes: SerialPass;
  private lastRenderError?: string;
  private readonly blockWatch: BlockWatch;

  constructor(private readonly o: BgpComponentOptions) {
    this.log = o.log.child({ component: 'bgp' });
    this.supervisor = o.supervisor ?? new BirdSupervisor({ stateDir: o.stateDir, log: o.log });
    this.debounceMs = o.debounceMs ?? 30;
    this.refreshMs = o.refreshMs ?? 5000;
    this.blockWatch = new BlockWatch({ ds: o.datastore, log: this.log, onChange: () => this.schedule(true) });
    this.passes = new SerialPass({
      body: () => this.renderAndApply(),
      onError: (e) => this.log.error({ err: e.message }, `BGP: ${e.message}`),
      debounceMs: this.debounceMs,
      stopped: () => this.stopped,
    });
  }

  /** Reads the first snapshot and this host's blocks, and starts BIRD on the rendered config (when the host is registered). */
  async start(): Promise<void> {
    this.stopped = false;
    this.snapshot = await this.o.syncer.whenSynced();
    await this.blockWatch.start();
    this.unsubscribe = this.o.syncer.subscribe((e) => this.onEvent(e));
    await this.passes.run();
    this.refresher = setInterval(() => this.schedule(true), this.refreshMs);
    this.refresher.unref();
  }

  private onEvent(e: SyncerEvent): void {
    this.snapshot = e.snapshot;
    if (e.type === 'snapshot') return this.schedule(true);
    const c = e.changed;
    if (c.has('pools') || c.has('hosts') || c.has('config')) return this.schedule(true);
    if (c.has('endpoints') && e.keys.some((k) => parseEndpointKey(k)?.host === this.o.hostname)) this.schedule(true);
  }

  private schedule(rereadBlocks: boolean): void {
    if (this.stopped) return;
    this.rereadBlocks ||= rereadBlocks;
    this.passes.schedule();
  }

  private async renderAndApply(): Promise<void> {
    if (this.stopped || !this.snapshot) return;
    const host = this.o.hostname;
    if (this.rereadBlocks) {
      this.rereadBlocks = false;
      try {
        this.blocks = await readAffineBlocks(this.o.datastore, host);
      } catch (e) {
        // Keep announcing what we had; the refresh retries.
        this.log.warn({ err: (e as Error).message }, `reading the blocks affine to ${host} failed; keeping the previous ones`);
      }
    }
    const snapshot = this.snapshot;
    if (!snapshot.hosts.get(host)?.ip) {
      if (!this.birdStarted) this.log.warn(`host ${host} has no registered IPv4 address: BIRD not started (start the node with --ip)`);
      return;
    }
    let config: string;
    try {
      const input = birdInputFromSnapshot(snapshot, host, this.blocks, this.blockWatch.routes(), (key, problem) => this.log.warn({ key }, `ignoring ${key}: ${problem}`), this.o.localSubnet?.());
      config = renderBirdConfig(input);
    } catch (e) {
      if (!(e instanceof BirdRenderError)) throw e;
      if (e.message !== this.lastRenderError) this.log.error(e.message);
      this.lastRenderError = e.message;
      return;
    }
    this.lastRenderError = undefined;
    if (this.stopped) return;
    const t0 = Date.now();
    if (!this.birdStarted) {
      try {
        await this.supervisor.start(config);
        this.birdStarted = true;
        this.recordError(undefined);
        this.log.info({ blocks: this.blocks }, `BIRD running for host ${host}`);
      } catch (e) {
        if (!(e instanceof BirdConfigError)) throw e;
        this.recordError(e.message);
      }
      return;
    }
    const r = await this.supervisor.apply(config);
    this.recordError(r.error);
    if (r.loaded) this.log.info({ blocks: this.blocks, ms: Date.now() - t0 }, 'BIRD config changed and loaded');
  }

  /** The refused config's message, for `calicoctl status` (another process): a file beside bird.conf. */
  private recordError(error: string | undefined): void {
    const file = this.supervisor.paths.configError;
    try {
      if (error) fs.writeFileSync(file, error + '\n');
      else fs.rmSync(file, { force: true });
    } catch (e) {
      this.log.warn({ err: (e as Error).message, file }, 'could not record the BIRD config state');
    }
  }

  /** Graceful: BIRD leaves its peers our routes (stale, graceful restart) and the kernel its routes (persist). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.passes.cancel();
    if (this.refresher) clearInterval(this.refresher);
    this.refresher = undefined;
    await this.blockWatch.stop();
    await this.passes.settled();
    await this.supervisor.stop({ graceful: true });
    this.birdStarted = false;
  }

  abort(): void {
    this.stopped = true;
    void this.blockWatch.stop();
    this.supervisor.kill();
  }
}
