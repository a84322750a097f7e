// The policy component (felix): follows the datastore syncer (endpoints of
// every host, profiles), compiles this host's desired filter chains and tag
// sets, and hands them to the one kernel applier. An endpoint recorded at
// Join gets its chains programmed before Join returns (the recorded hook),
// so a container's first packet meets its policy: nothing of it passes
// unfiltered (fail-closed dispatch drops an interface without chains) and
// nothing is dropped that its profiles allow.
import type { Logger } from 'pino';
import type { Datastore } from '../datastore';
import type { Endpoint } from '../datastore/endpoint-store';
import { DEFAULT_PROFILE, ProfileStore } from '../datastore/profile-store';
import { toolRunner, type ToolRunner } from '../dataplane/applier/exec';
import { emptyState, type DesiredState, type KernelApplier } from '../dataplane/applier/types';
import { keys } from '../datastore/keys';
import type { Component } from '../lifecycle/component';
import type { DatastoreSnapshot, DatastoreSyncer } from '../syncer/types';
import { DEFAULT_RECHECK_MARK, programmedEndpoints, type PolicyOptions } from './compile';
import { PolicyCompiler } from './compiler';
import { deleteFlows, markForRecheck, mayHaveFlows } from './conntrack';
import { narrowedEndpoints, type RecheckTarget } from './narrowed';

export interface PolicyStatus {
  /** Local endpoints with chains. */
  endpoints: number;
  profiles: number;
  /** The last compile handed to the applier: when (epoch ms) and how long it took. */
  lastCompileAt?: number;
  lastCompileMs?: number;
  /** Open connections put up for a recheck because their endpoint's access was narrowed (since start), and the last time. */
  connectionsRechecked: number;
  lastRecheckAt?: number;
  /** The last compile, apply or conntrack error (cleared by the next success of that step). */
  lastError?: string;
}

export interface PolicyComponentOptions {
  host: string;
  datastore: Datastore;
  syncer: DatastoreSyncer;
  applier: KernelApplier;
  options?: PolicyOptions;
  log: Logger;
  /** Runs conntrack (tests and the bench: inside their namespace); default: in the node's own. */
  conntrack?: ToolRunner;
}

function addressesOf(ep: Endpoint): RecheckTarget[] {
  return [
    ...ep.ipv4_nets.map((n) => ({ family: 4 as const, address: n.split('/')[0]! })),
    ...ep.ipv6_nets.map((n) => ({ family: 6 as const, address: n.split('/')[0]! })),
  ];
}

export class PolicyComponent implements Component {
  readonly name = 'policy';
  /** The applier's owner name for policy's state. */
  static readonly OWNER = 'policy';
  /** Endpoints recorded in this process that the syncer has not delivered yet, by key. */
  private readonly pending = new Map<string, Endpoint>();
  private snapshot?: DatastoreSnapshot;
  private unsubscribe?: () => void;
  private readonly state: PolicyStatus = { endpoints: 0, profiles: 0, connectionsRechecked: 0 };
  /** What was last handed to the applier, and the local endpoints it programmed: the base of the narrowing check. */
  private last: { desired: DesiredState; endpoints: Endpoint[] } = { desired: emptyState(), endpoints: [] };
  /** Conntrack updates run one after another, each after the apply it follows. */
  private flushing: Promise<void> = Promise.resolve();
  private readonly conntrack: ToolRunner;
  /** Address -> when an endpoint recorded in this process got it (its flows are new: no recheck from before then applies). */
  private readonly joinedAt = new Map<string, number>();
  /** Compiles what changed since the last program(), not every endpoint again. */
  private readonly compiler = new PolicyCompiler();

  constructor(private readonly o: PolicyComponentOptions) {
    this.conntrack = o.conntrack ?? toolRunner({});
  }

  async start(): Promise<void> {
    // Containers started without CALICO_PROFILE join it: members reach each other, nothing else reaches them.
    if (await new ProfileStore(this.o.datastore).ensure(DEFAULT_PROFILE)) {
      this.o.log.info(`created the default profile ${DEFAULT_PROFILE}`);
    }
    this.unsubscribe = this.o.syncer.subscribe((e) => {
      if (e.type === 'update' && !e.changed.has('endpoints') && !e.changed.has('profiles')) return;
      this.snapshot = e.snapshot;
      for (const k of this.pending.keys()) if (e.snapshot.endpoints.has(k)) this.pending.delete(k);
      this.program();
    });
    await this.o.applier.flush().catch((e) => this.o.log.warn({ err: (e as Error).message }, 'first policy apply failed; retried'));
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.flushing;
  }

  /** Before Join returns: this endpoint's chains are in the kernel. */
  async endpointRecorded(ep: Endpoint): Promise<void> {
    if (ep.host !== this.o.host) return;
    const key = keys.endpoint(ep.host, ep.containerId, ep.endpointId);
    // Recorded again (a start event, a sweep after a node restart): its flows are its own, and stay.
    const known = this.pending.has(key) || this.snapshot?.endpoints.has(key) === true || this.last.endpoints.some((e) => e.endpointId === ep.endpointId);
    this.pending.set(key, ep);
    // A new endpoint, before its container's process starts (nothing of it
    // has a flow yet): entries a previous holder of these addresses left
    // would otherwise be ESTABLISHED for the new one, past its policy
    // (felix clears them when an address moves too).
    const stale = known ? [] : addressesOf(ep);
    for (const t of stale) this.joinedAt.set(t.address, Date.now());
    this.program();
    await Promise.all([this.o.applier.flush(), stale.length ? this.forgetStale(stale) : undefined]);
  }

  private async forgetStale(all: RecheckTarget[]): Promise<void> {
    // In the node's own namespace its conntrack table says first whether there is anything to delete (usually not).
    const targets = this.o.conntrack ? all : await mayHaveFlows(all);
    const r = targets.length ? await deleteFlows(this.conntrack, targets) : { deleted: 0, errors: [] };
    if (r.errors.length) {
      this.state.lastError = r.errors.join('; ');
      this.o.log.warn({ errors: r.errors }, 'conntrack: stale entries of a reused address not deleted');
    } else if (r.deleted) {
      this.o.log.info({ addresses: targets.map((t) => t.address), deleted: r.deleted }, 'stale conntrack entries of a reused address deleted');
    }
    // Bounded: only the recent joins matter (a recheck computed before them is at most one apply away).
    if (this.joinedAt.size > 10000) this.joinedAt.clear();
  }

  status(): Record<string, unknown> {
    return { ...this.state };
  }

  /** Resolves once the connection rechecks asked for so far have run (tests). */
  settled(): Promise<void> {
    return this.flushing;
  }

  private program(): void {
    const snap = this.snapshot;
    if (!snap) return;
    const started = process.hrtime.bigint();
    try {
      // The snapshot's endpoints, with what was recorded here and the snapshot does not show yet in their place (one copy, not two).
      const endpoints: Endpoint[] = [];
      if (this.pending.size) for (const [k, ep] of snap.endpoints) endpoints.push(this.pending.get(k) ?? ep);
      else for (const ep of snap.endpoints.values()) endpoints.push(ep);
      for (const [k, ep] of this.pending) if (!snap.endpoints.has(k)) endpoints.push(ep);
      const input = { host: this.o.host, endpoints, profiles: [...snap.profiles.values()], options: this.o.options };
      const desired = this.compiler.compile(input);
      this.o.applier.set(PolicyComponent.OWNER, desired);
      const local = programmedEndpoints(input);
      let narrowed = narrowedEndpoints(this.last.desired, desired, this.last.endpoints);
      if (narrowed.length) {
        // An address nobody holds any more has no flows to recheck (its stale
        // entries go when the address is given out again, at that Join).
        const held = new Set(input.endpoints.flatMap((e) => addressesOf(e).map((t) => t.address)));
        narrowed = narrowed.filter((t) => held.has(t.address));
      }
      this.last = { desired, endpoints: local };
      if (narrowed.length) this.forget(narrowed, Date.now());
      this.state.endpoints = local.length;
      this.state.profiles = snap.profiles.size;
      this.state.lastCompileAt = Date.now();
      this.state.lastCompileMs = Number(process.hrtime.bigint() - started) / 1e6;
      this.state.lastError = undefined;
    } catch (e) {
      this.state.lastError = (e as Error).message;
      this.o.log.error({ err: (e as Error).message }, 'policy not compiled');
    }
  }

  /**
   * Once the narrower rules are in the kernel, the connections they no longer
   * allow must not live on through the ESTABLISHED accept: the endpoint's
   * open flows are marked for a recheck (the ones still allowed go on).
   */
  private forget(all: RecheckTarget[], computedAt: number): void {
    this.flushing = this.flushing.then(async () => {
      // An address that joined a new endpoint since: its flows are the new container's, made under the new rules.
      const targets = all.filter((t) => (this.joinedAt.get(t.address) ?? 0) < computedAt);
      if (!targets.length) return;
      try {
        await this.o.applier.flush();
      } catch (e) {
        // Not applied: the old, wider rules are still in place; flushing now would change nothing.
        this.state.lastError = `apply before the connection recheck: ${(e as Error).message}`;
        return;
      }
      const r = await markForRecheck(this.conntrack, targets, this.o.options?.recheckMark ?? DEFAULT_RECHECK_MARK);
      this.state.connectionsRechecked += r.marked;
      this.state.lastRecheckAt = Date.now();
      if (r.errors.length) {
        this.state.lastError = r.errors.join('; ');
        this.o.log.warn({ errors: r.errors }, 'conntrack update failed; open connections may outlive a narrowed policy');
      } else {
        this.o.log.info({ addresses: targets.map((t) => t.address), marked: r.marked }, 'policy narrowed: open connections marked for a recheck');
      }
    });
  }
}
