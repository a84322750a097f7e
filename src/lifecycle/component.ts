/**
 * One part of the node process (datastore, proxy, Docker plugin, reconciler,
 * policy, BGP...). The node starts components in order and stops them in
 * reverse order, so a later component may rely on an earlier one.
 */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  /** Idempotent; must not throw when start() never ran or failed half way. The node bounds how long it may take. */
  stop(): Promise<void>;
  /** Kills the component's child processes at once: the node's stop bound ran out. */
  abort?(): void;
  /** Whether it is up now: undefined when it is, else why not (/healthz). Answers at once, from what it already knows. */
  health?(): string | undefined;
  /**
   * Facts for `calicoctl status` (JSON-serialisable, cheap: called every
   * couple of seconds). The node's status file collects them by component name.
   */
  status?(): Record<string, unknown>;
}
