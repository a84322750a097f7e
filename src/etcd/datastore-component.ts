import type { Logger } from 'pino';
import type { Component } from '../lifecycle/component';
import { Datastore, DatastoreError, PoolStore } from '../datastore';
import type { ResolvedEndpoints } from './endpoints';
import { EmbeddedMode, findOrStartEtcd } from './discovery';
import { EmbeddedClusterOptions, EmbeddedEtcd } from './embedded';
import { describeCluster, plainClusterWarning } from './cluster';
import { checkTlsEndpoints, EtcdTlsFiles, hasTls, loadEtcdTls } from './tls';

export interface NodeEtcdOptions {
  endpoints: ResolvedEndpoints;
  /** CA, client certificate and key for https:// endpoints (--etcd-ca-file ...); read when the node starts. */
  tls?: EtcdTlsFiles;
  /** See EmbeddedMode; default 'auto'. */
  embedded?: EmbeddedMode;
  /**
   * --etcd-cluster: this node starts its member of that cluster and uses
   * every member as its datastore (endpoints and embedded are then unused).
   */
  cluster?: EmbeddedClusterOptions;
  /**
   * How long the node waits for an external etcd at startup (boot order).
   * Default 20 s; 120 s for a cluster member (the other hosts' members make
   * the quorum, and they start when their hosts do).
   */
  waitMs?: number;
}

/** Which datastore the node uses, in words: `calicoctl node` says it (no silent split brain). */
export type DatastoreKind =
  | { kind: 'single'; description: string }
  | { kind: 'cluster'; description: string }
  | { kind: 'external'; description: string };

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
  private kind?: DatastoreKind;

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

  /** Which datastore this node uses; only valid after start(). */
  get datastoreKind(): DatastoreKind | undefined {
    return this.kind;
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
    if (etcd.cluster) return this.connectCluster(etcd.cluster);
    // Bad TLS files are named before anything starts.
    checkTlsEndpoints(etcd.endpoints.endpoints, etcd.tls, etcd.endpoints.source);
    const tls = hasTls(etcd.tls) ? loadEtcdTls(etcd.tls!) : undefined;
    const found = await findOrStartEtcd(etcd.endpoints, etcd.embedded ?? 'auto', stateDir, this.log);
    this.member = found.member;
    // The embedded member is reached on its socket, never with TLS.
    this.ds = new Datastore({ endpoints: found.endpoints, log: this.log, tls: found.member ? undefined : tls });
    this.kind = found.member
      ? {
          kind: 'single',
          description: `this host's own single-member etcd (${found.member.clientUrl}): no other host shares it; ` +
            'to share one datastore between hosts, start every node with --etcd-cluster NAME=IP,... (or --etcd-endpoints of a cluster)',
        }
      : { kind: 'external', description: `etcd at ${found.endpoints.join(', ')}` };
    await this.waitForEtcd(etcd.waitMs ?? 20000);
    await this.ensurePools();
  }

  /** --etcd-cluster: this host's member, then the whole cluster as the datastore. */
  private async connectCluster(cluster: EmbeddedClusterOptions): Promise<void> {
    const { etcd, stateDir } = this.opts;
    const { plan } = cluster;
    const tls = hasTls(etcd.tls) ? loadEtcdTls(etcd.tls!) : undefined;
    if (!cluster.tls) this.log.warn(plainClusterWarning(plan));
    this.member = new EmbeddedEtcd({ stateDir, log: this.log, cluster });
    await this.member.start();
    this.ds = new Datastore({ endpoints: plan.endpoints, log: this.log, tls });
    this.kind = { kind: 'cluster', description: `${describeCluster(plan)}; clients use ${plan.endpoints.join(', ')}` };
    await this.waitForEtcd(etcd.waitMs ?? 120000, `the other members of cluster ${plan.token} (a majority of ${plan.members.length} must run)`);
    await this.ensurePools();
  }

  private async ensurePools(): Promise<void> {
    const created = await new PoolStore(this.ds!).ensureDefaultPools();
    if (created.length) {
      this.log.info({ pools: created }, `no IP pool existed: created the default pools ${created.join(' and ')}`);
    }
  }

  private async waitForEtcd(waitMs: number, what?: string): Promise<void> {
    const ds = this.ds!;
    const deadline = Date.now() + waitMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await ds.ping();
        return;
      } catch (e) {
        // A certificate that does not verify will not start to: no point waiting for boot order.
        if (Date.now() > deadline || (e instanceof DatastoreError && e.code === 'TLS')) throw e;
        if (attempt === 0) this.log.warn(`waiting for ${what ?? 'etcd'} at ${ds.endpoints.join(', ')}: ${(e as Error).message}`);
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
    this.kind = undefined;
  }
}
