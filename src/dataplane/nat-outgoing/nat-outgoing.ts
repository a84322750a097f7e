// The node's NAT outgoing component: follows the pools and keeps the kernel's
// masquerade rule in step with their --nat-outgoing flags.
import type { Logger } from 'pino';
import type { Component } from '../../node/component';
import { NatKernel } from './apply';
import { NatNames, NatPool, natNames, renderNat } from './render';

export interface NatOutgoingOptions {
  /** The current pools (the datastore's pool store). */
  listPools(): Promise<NatPool[]>;
  /**
   * Calls back on every pool change, returning an unsubscribe function.
   * Without it, pools are polled every pollMs.
   */
  watchPools?(onChange: () => void): Promise<() => void> | (() => void);
  pollMs?: number;
  names?: NatNames;
  netns?: string;
  /** Remove the rules when the node stops (default false: running containers keep their NAT). */
  removeOnStop?: boolean;
  log: Logger;
}

export class NatOutgoing implements Component {
  readonly name = 'nat-outgoing';
  private readonly kernel: NatKernel;
  private timer?: NodeJS.Timeout;
  private unwatch?: () => void;
  private running?: Promise<void>;
  private again = false;

  constructor(private readonly o: NatOutgoingOptions) {
    this.kernel = new NatKernel({ names: o.names ?? natNames(), netns: o.netns });
  }

  async start(): Promise<void> {
    // A failure is logged and retried on the next pass; it must not keep the node down.
    await this.sync().catch(() => undefined);
    if (this.o.watchPools) this.unwatch = await this.o.watchPools(() => void this.sync().catch(() => undefined));
    // Polled even when watched: a missed watch event must not leave NAT wrong forever.
    this.timer = setInterval(() => void this.sync().catch(() => undefined), this.o.pollMs ?? (this.o.watchPools ? 30000 : 3000));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.unwatch?.();
    await this.running?.catch(() => undefined);
    if (this.o.removeOnStop) await this.kernel.remove();
  }

  /** One pass: read pools, apply. Concurrent callers share the pass and ask for one more. */
  sync(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        const pools = await this.o.listPools();
        await this.kernel.apply(renderNat(pools, this.o.names ?? natNames()));
      } catch (e) {
        this.o.log.error({ err: e }, 'NAT outgoing not applied');
        throw e;
      }
    })().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.sync().catch(() => undefined);
      }
    });
    return this.running;
  }
}
