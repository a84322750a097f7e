import type { Logger } from 'pino';
import type { Component } from './component';

/**
 * The node process: components side by side in one Node.js process. Start
 * order is the order they were added; stop order is the reverse. If one fails
 * to start, the ones already started are stopped before the error surfaces.
 */
export class NodeProcess {
  private readonly components: Component[] = [];
  private started: Component[] = [];
  private stopping?: Promise<void>;

  constructor(private readonly log: Logger) {}

  add(c: Component): this {
    this.components.push(c);
    return this;
  }

  async start(): Promise<void> {
    for (const c of this.components) {
      try {
        await c.start();
      } catch (e) {
        this.log.error({ component: c.name, err: e }, `failed to start ${c.name}`);
        await this.stop();
        throw e;
      }
      this.started.push(c);
      this.log.debug({ component: c.name }, `${c.name} started`);
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const c of [...this.started].reverse()) {
        try {
          await c.stop();
        } catch (e) {
          this.log.warn({ component: c.name, err: e }, `error stopping ${c.name}`);
        }
      }
      this.started = [];
    })();
    return this.stopping;
  }
}
