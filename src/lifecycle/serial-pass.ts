// A component's pass (render and apply, reconcile) asked for from many
// places — datastore events, a watch, a resync timer — and run one at a time:
// asks within the debounce share one timer; an ask while a pass runs makes
// exactly one more pass right after it; once the owner says it is stopped, no
// new pass starts. The body's errors go to `onError` and the next ask tries
// again.
export interface SerialPassOptions {
  body: () => Promise<void>;
  onError: (e: Error) => void;
  debounceMs: number;
  /** The owner's own flag (a component can be started again after stop). */
  stopped: () => boolean;
}

export class SerialPass {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;

  constructor(private readonly o: SerialPassOptions) {}

  /** A pass after the debounce (asks meanwhile share it). */
  schedule(): void {
    if (this.o.stopped() || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.run();
    }, this.o.debounceMs);
  }

  /** A pass now, or right after the one under way; resolves when it has run. */
  run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.o.body();
        } catch (e) {
          this.o.onError(e as Error);
        }
      } while (this.again && !this.o.stopped());
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Drops a pending debounced ask (the owner is stopping). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Resolves when the pass under way, if any, has ended. */
  async settled(): Promise<void> {
    await this.running?.catch(() => undefined);
  }
}
