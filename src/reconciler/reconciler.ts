// The node's reconciler: keeps the datastore's view of this host's
// containers true when Docker acts without the proxy. Docker events give
// prompt reactions (start -> record the endpoint; destroy -> release), a
// periodic sweep repairs whatever events missed (dockerd restarts, a node
// that was down, `docker rm` while we were away).
import type Dockerode from 'dockerode';
import type { Logger } from 'pino';
import type { EndpointStore } from '../datastore/endpoint-store';
import type { ContainerView } from '../endpoints/container-view';
import type { InflightHandles } from '../endpoints/inflight';
import type { EndpointLifecycle } from '../endpoints/lifecycle';
import type { EndpointRecorder } from '../endpoints/recorder';
import type { StartTrace } from '../endpoints/start-trace';
import type { Ipam } from '../ipam/types';
import type { ReconcilerMetrics } from '../metrics/node-metrics';
import { DOCKER_HANDLE_PREFIX, HANDLE_LABEL } from '../names';
import { OWNER_ATTR, recordedOwner } from '../ipam/owner';
import { addressesOf, type Endpoint } from '../endpoints/model';
import type { Component } from '../lifecycle/component';
import { ContainerEvent, EventFollower } from './docker-events';
import { planSweep, SweepPlan } from './sweep-plan';

export interface ReconcilerOptions {
  docker: Dockerode;
  /** The process's one IPAM. */
  ipam: Ipam;
  /** Where this host's endpoint records are listed. */
  store: EndpointStore;
  lifecycle: EndpointLifecycle;
  recorder: EndpointRecorder;
  inflight: InflightHandles;
  host: string;
  /** Removes veths of endpoints that are gone (the plugin's); run every sweep. */
  sweepLinks?: () => Promise<unknown>;
  log: Logger;
  /** Between sweeps (default 30 s). */
  sweepIntervalMs?: number;
  /** How long a reservation without a container, a docker- address held by no container, or a stale block claim survives before collection (default 120 s). */
  gcGraceMs?: number;
  /** Event stream resubscription backoff cap (default 5 s). */
  maxBackoffMs?: number;
  /** Sweeps and the addresses released (the node's metrics). */
  metrics?: ReconcilerMetrics;
  /** Told of every start event: it ends that container's start trace. */
  trace?: Pick<StartTrace, 'started'>;
}

export class Reconciler implements Component {
  readonly name = 'reconciler';
  private follower?: EventFollower;
  private timer?: NodeJS.Timeout;
  private sightings = new Map<string, number>();
  private sweeping?: Promise<SweepPlan | undefined>;
  private sweepAgain = false;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(private readonly o: ReconcilerOptions) {}

  private get ipam(): Ipam {
    return this.o.ipam;
  }

  async start(): Promise<void> {
    // Adopt what exists before serving: a restarted node finds its
    // containers running and leaves them be.
    await this.sweep().catch((e) => this.o.log.warn({ err: e }, 'initial sweep failed; retrying on schedule'));
    this.follower = new EventFollower({
      docker: this.o.docker,
      log: this.o.log,
      actions: ['start', 'destroy'],
      maxBackoffMs: this.o.maxBackoffMs,
      onEvent: (e) => this.track(this.onEvent(e)),
      // Events were missed while the stream was down.
      onConnected: () => this.track(this.sweep()),
    });
    this.follower.start();
    this.timer = setInterval(() => this.track(this.sweep()), this.o.sweepIntervalMs ?? 30000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.follower?.stop();
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.pending]);
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((e) => this.o.log.warn({ err: e }, 'reconciler action failed; the next sweep retries'));
    this.pending.add(q);
    void q.finally(() => this.pending.delete(q));
  }

  private async onEvent(e: ContainerEvent): Promise<void> {
    if (e.action === 'start') {
      this.o.trace?.started(e.id);
      const ep = await this.o.recorder.record(e.id);
      if (ep) await this.noteDockerDriverOwner(ep);
      return;
    }
    if (e.action === 'destroy') {
      await this.o.lifecycle.forgetContainer(e.id);
      const handle = e.attributes[HANDLE_LABEL];
      // Addresses given by `calicoctl container add` carry no label: they
      // name their container, and the next sweep releases them.
      const released = handle ? await this.releaseIfOwner(handle, e.id) : 0;
      this.o.metrics?.released('event', released);
      if (released) this.o.log.info({ container: e.id, handle, released }, 'container removed; address released');
    }
  }

  /**
   * Releases the handle a removed container's label names only when IPAM
   * recorded that container as its owner: a label is anyone's to set, and
   * `docker commit` copies it into every container of the image.
   */
  private async releaseIfOwner(handle: string, container: string): Promise<number> {
    const allocs = await this.ipam.listByHandle(handle);
    if (!allocs.length) return 0;
    const owner = recordedOwner(allocs);
    if (owner === container) return this.ipam.releaseByHandle(handle);
    if (owner) {
      this.o.log.warn(
        { container, handle, owner, addresses: allocs.map((a) => a.address) },
        `removed container ${container.slice(0, 12)} carried the handle label of container ${owner.slice(0, 12)}: nothing released`,
      );
    } else {
      this.o.log.debug({ container, handle }, 'handle without a recorded owner: the sweep decides');
    }
    return 0;
  }

  /**
   * A container started on Docker's own socket holds addresses that Docker's
   * IPAM calls allocated ("docker-" handles, no container named): record it
   * as their owner, so the address names it and only its removal frees it.
   */
  private async noteDockerDriverOwner(ep: Endpoint): Promise<void> {
    const { ipv4, ipv6 } = addressesOf(ep);
    for (const address of [ipv4, ipv6]) {
      if (!address) continue;
      const a = await this.ipam.lookup(address);
      if (!a || a.host !== this.o.host || !a.handle.startsWith(DOCKER_HANDLE_PREFIX) || a.attrs[OWNER_ATTR]) continue;
      await this.ipam.setAttrs(a.handle, { [OWNER_ATTR]: ep.containerId });
    }
  }

  /**
   * One pass over datastore and dockerd. Concurrent callers share the pass
   * in progress and ask for one more after it.
   */
  sweep(): Promise<SweepPlan | undefined> {
    if (this.sweeping) {
      this.sweepAgain = true;
      return this.sweeping;
    }
    const m = this.o.metrics;
    this.sweeping = (m ? this.sweepOnce().then((p) => (m.sweep(p ? 'ok' : 'skipped'), p), (e) => (m.sweep('failed'), Promise.reject(e))) : this.sweepOnce()).finally(() => {
      this.sweeping = undefined;
      if (this.sweepAgain) {
        this.sweepAgain = false;
        this.track(this.sweep());
      }
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<SweepPlan | undefined> {
    const { host, log } = this.o;
    // Order matters (see planSweep): allocations, then endpoints, then containers.
    const allocations = await this.ipam.listByHost(host);
    const staleAffinities = await this.ipam.listStaleAffinities?.();
    const orphanBlocks = await this.ipam.listOrphanBlocks?.();
    const endpoints = await this.o.store.list(host);
    let containers: ContainerView[];
    try {
      containers = (await this.o.docker.listContainers({ all: true })) as unknown as ContainerView[];
    } catch (e) {
      // Without dockerd's word nothing may be released.
      log.debug({ err: e }, 'dockerd unavailable; sweep skipped');
      return undefined;
    }
    const plan = planSweep({
      host,
      now: Date.now(),
      graceMs: this.o.gcGraceMs ?? 120000,
      allocations,
      endpoints,
      containers,
      inflight: (h) => this.o.inflight.has(h),
      sightings: this.sightings,
      staleAffinities,
      orphanBlocks,
    });
    this.sightings = plan.sightings;
    // A label only names a handle: a container is adopted as its owner only
    // while IPAM has recorded none (the create's answer was lost).
    const owners = new Map<string, string | undefined>();
    for (const a of allocations) if (!owners.get(a.handle)) owners.set(a.handle, a.attrs?.[OWNER_ATTR]);
    const listed = new Set(containers.map((c) => c.Id));
    const release = [...plan.release];
    for (const a of plan.adopt) {
      const owner = owners.get(a.handle);
      if (owner && owner !== a.container) {
        log.warn({ handle: a.handle, owner, container: a.container }, `container ${a.container.slice(0, 12)} carries the handle label of container ${owner.slice(0, 12)}: not adopted`);
        if (!listed.has(owner) && !release.some((r) => r.handle === a.handle)) {
          release.push({ handle: a.handle, reason: `its owner ${owner.slice(0, 12)} no longer exists (container ${a.container.slice(0, 12)} only copied its label)` });
        }
        continue;
      }
      await this.ipam.setAttrs(a.handle, { [OWNER_ATTR]: a.container });
      log.info({ handle: a.handle, container: a.container }, 'reservation adopted by its container');
    }
    // Records first: a record replaces the container's older ones in the same
    // transaction and keeps their profiles, which a delete first would lose.
    for (const ep of plan.record) {
      // An endpoint deleted in this process is not brought back: its record stays inactive.
      if (!(await this.o.lifecycle.record(ep))) await this.o.lifecycle.deactivate(ep);
    }
    for (const ep of plan.removeEndpoints) {
      await this.o.lifecycle.removeRecord(ep);
      log.info({ container: ep.containerId, endpoint: ep.endpointId }, 'stale endpoint record deleted');
    }
    for (const r of release) {
      const n = await this.ipam.releaseByHandle(r.handle);
      this.o.metrics?.released('sweep', n);
      if (n) log.info({ handle: r.handle, released: n }, `address released: ${r.reason}`);
    }
    // IPAM leftovers of dead processes: block claims (docker- handles are in plan.release).
    for (const { affinity, reason } of plan.settleAffinities) {
      const outcome = await this.ipam.settleAffinity?.(affinity);
      if (outcome && outcome !== 'changed') log.info({ host: affinity.host, block: affinity.block, outcome }, `stale block claim settled: ${reason}`);
    }
    for (const { block, reason } of plan.keptOrphanBlocks) log.warn({ block: block.block, host: block.host }, reason);
    for (const { block, reason } of plan.removeOrphanBlocks) {
      if ((await this.ipam.removeOrphanBlock?.(block)) === 'removed') log.info({ block: block.block, host: block.host }, `block removed: ${reason}`);
    }
    // Veths whose endpoint is gone (Docker tore a container down while the node was away).
    await this.o.sweepLinks?.().catch((e) => log.warn({ err: (e as Error).message }, 'sweeping orphaned veths failed'));
    return plan;
  }
}
