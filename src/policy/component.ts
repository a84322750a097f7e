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
import type { KernelApplier } from '../dataplane/applier/types';
import { keys } from '../datastore/keys';
import type { Component } from '../node/component';
import type { DatastoreSnapshot, DatastoreSyncer } from '../syncer/types';
import { compilePolicy, programmedEndpoints, type PolicyOptions } from './compile';

export interface PolicyStatus {
  endpoints: number;
  profiles: number;
  lastApplyAt?: number;
  lastApplyMs?: number;
  lastError?: string;
}

export interface PolicyComponentOptions {
  host: string;
  datastore: Datastore;
  syncer: DatastoreSyncer;
  applier: KernelApplier;
  options?: PolicyOptions;
  log: Logger;
}

export class PolicyComponent implements Component {
  readonly name = 'policy';
  /** The applier's owner name for policy's state. */
  static readonly OWNER = 'policy';
  /** Endpoints recorded in this process that the syncer has not delivered yet, by key. */
  private readonly pending = new Map<string, Endpoint>();
  private snapshot?: DatastoreSnapshot;
  private unsubscribe?: () => void;
  private readonly state: PolicyStatus = { endpoints: 0, profiles: 0 };

  constructor(private readonly o: PolicyComponentOptions) {}

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
  }

  /** Before Join returns: this endpoint's chains are in the kernel. */
  async endpointRecorded(ep: Endpoint): Promise<void> {
    if (ep.host !== this.o.host) return;
    this.pending.set(keys.endpoint(ep.host, ep.containerId, ep.endpointId), ep);
    this.program();
    await this.o.applier.flush();
  }

  status(): PolicyStatus {
    return { ...this.state };
  }

  private program(): void {
    const snap = this.snapshot;
    if (!snap) return;
    const started = process.hrtime.bigint();
    try {
      const endpoints = new Map(snap.endpoints);
      for (const [k, ep] of this.pending) endpoints.set(k, ep);
      const input = { host: this.o.host, endpoints: [...endpoints.values()], profiles: [...snap.profiles.values()], options: this.o.options };
      this.o.applier.set(PolicyComponent.OWNER, compilePolicy(input));
      this.state.endpoints = programmedEndpoints(input).length;
      this.state.profiles = snap.profiles.size;
      this.state.lastApplyAt = Date.now();
      this.state.lastApplyMs = Number(process.hrtime.bigint() - started) / 1e6;
      this.state.lastError = undefined;
    } catch (e) {
      this.state.lastError = (e as Error).message;
      this.o.log.error({ err: (e as Error).message }, 'policy not compiled');
    }
  }
}
