import type { Logger } from 'pino';
import type { Component } from '../lifecycle/component';

/** How long one component may take to stop before the node moves on. */
export const COMPONENT_STOP_MS = 2500;

/**
 * The node process: components side by side in one Node.js process, started
 * one at a time (start order), stopped in reverse. A component that fails to
 * start stops the ones already started before the error surfaces. Every stop
 * is bounded: a component that hangs (a keep-alive connection, an etcd that
 * does not answer) is logged and left behind, and abort() kills children.
 */
export class NodeProcess {
  private started: Component[] = [];
  private stopping?: Promise<void>;

  constructor(private readonly log: Logger, private readonly stopMs = COMPONENT_STOP_MS) {}

  /** Starts one component; on failure, stops everything started so far and rethrows. */
  async start(c: Component): Promise<void> {
    try {
      await c.start();
    } catch (e) {
      this.log.error({ component: c.name, err: e }, `failed to start ${c.name}`);
      this.started.push(c); // its stop() undoes what start() did half way
      await this.stop();
      throw e;
    }
    this.started.push(c);
    this.log.debug({ component: c.name }, `${c.name} started`);
  }

  /** The components running now, in start order. */
  components(): readonly Component[] {
    return this.started;
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const c of [...this.started].reverse()) {
        let timer: NodeJS.Timeout | undefined;
        const bound = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.stopMs)));
        const r = await Promise.race([
          c.stop().then(
            () => 'ok' as const,
            (e) => (this.log.warn({ component: c.name, err: e }, `error stopping ${c.name}`), 'ok' as const),
          ),
          bound,
        ]);
        clearTimeout(timer);
        if (r === 'timeout') {
          this.log.warn({ component: c.name }, `${c.name} did not stop within ${this.stopMs} ms; killing its children`);
          c.abort?.();
        }
      }
      this.started = [];
    })();
    return this.stopping;
  }

  /** Kills every component's children at once (the process is about to exit). */
  abort(): void {
    for (const c of [...this.started].reverse()) c.abort?.();
  }
}
