import type { Logger } from 'pino';
import type { Component } from '../lifecycle/component';
import { Datastore, PoolStore } from '../datastore';
import type { ResolvedEndpoints } from './endpoints';
import { EmbeddedMode, findOrStartEtcd } from './discovery';
import type { EmbeddedEtcd } from './embedded';

export interface NodeEtcdOptions {
  endpoints: ResolvedEndpoints;
  /** See EmbeddedMode; default 'auto'. */
  embedded?: EmbeddedMode;
  /** How long the node waits for an external etcd at startup (boot order). Default 20 s. */
  waitMs?: number;
}

export interface DatastoreComponentOptions {
  etcd: NodeEtcdOptions;
  stateDir: string;
}

/**
 * The node's first component: finds etcd (or starts the embedded member) and
 * creates the 2015 default pools when no pool exists. The node builds the
 * rest from its `datastore` once it has started.
 */
export class DatastoreComponent implements Component {
  readonly name = 'datastore';
  private ds?: Datastore;
  private member?: EmbeddedEtcd;

  constructor(private readonly opts: DatastoreComponentOptions, private readonly log: Logger) {}

  /** The connected datastore; only valid after start(). */
  get datastore(): Datastore {
    if (!this.ds) throw new Error('datastore used before the datastore component started');
    return this.ds;
  }

  /** The embedded member, when this node started one. */
  get embedded(): EmbeddedEtcd | undefined {
    return this.member;
  }

  /** Whether etcd answered lately (Datastore.health: never waits on etcd). */
  health(): string | undefined {
    return this.ds ? this.ds.health() : 'not connected to etcd';
  }

  async start(): Promise<void> {
    try {
      await this.connect();
    } catch (e) {
      // The node stops only components that started: undo our half (an embedded member) here.
      await this.stop();
      throw e;
    }
  }

  private async connect(): Promise<void> {
    const { etcd, stateDir } = this.opts;
    this.member = await findOrStartEtcd(etcd.endpoints, etcd.embedded ?? 'auto', stateDir, this.log);
    this.ds = new Datastore({ endpoints: etcd.endpoints.endpoints, log: this.log });
    await this.waitForEtcd(etcd.waitMs ?? 20000);

    const created = await new PoolStore(this.ds).ensureDefaultPools();
    if (created.length) {
      this.log.info({ pools: created }, `no IP pool existed: created the default pools ${created.join(' and ')}`);
    }
  }

  private async waitForEtcd(waitMs: number): Promise<void> {
    const ds = this.ds!;
    const deadline = Date.now() + waitMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await ds.ping();
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        if (attempt === 0) this.log.warn(`waiting for etcd at ${ds.endpoints.join(', ')}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Kills the embedded member at once (the node's stop bound ran out). */
  abort(): void {
    this.member?.kill();
  }

  async stop(): Promise<void> {
    this.ds?.close();
    this.ds = undefined;
    await this.member?.stop();
    this.member = undefined;
  }
}
