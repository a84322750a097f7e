// The node's NAT outgoing component: hands the kernel applier the masquerade
// state for the current pools. It is fed (setPools on every pool change from
// the datastore syncer), never polls, and leaves the rules in place when the
// node stops: running containers keep their NAT.
import type { Logger } from 'pino';
import type { Component } from '../../lifecycle/component';
import type { DatastoreSyncer } from '../../syncer/types';
import type { KernelApplier } from '../applier/types';
import { NatPool, renderNat } from './render';

export interface NatOutgoingOptions {
  applier: KernelApplier;
  /** Where the pools come from: every pool change reaches setPools (no polling). Absent: setPools is called by hand. */
  syncer?: DatastoreSyncer;
  log: Logger;
}

export class NatOutgoing implements Component {
  readonly name = 'nat-outgoing';
  /** The applier's owner name for NAT outgoing's state. */
  static readonly OWNER = 'nat-outgoing';

  private unsubscribe?: () => void;

  constructor(private readonly o: NatOutgoingOptions) {}

  /** The complete, current pool list; each call replaces the last. */
  setPools(pools: NatPool[]): void {
    this.o.applier.set(NatOutgoing.OWNER, renderNat(pools));
    this.o.log.debug({ pools: pools.length, nat: pools.filter((p) => p.natOutgoing).map((p) => p.cidr) }, 'NAT outgoing: pools handed to the applier');
  }

  async start(): Promise<void> {
    this.unsubscribe = this.o.syncer?.subscribe((e) => {
      if (e.type === 'update' && !e.changed.has('pools')) return;
      this.setPools([...e.snapshot.pools.values()]);
    });
  }

  /** Stops following the pools; the rules stay in the kernel. */
  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}
