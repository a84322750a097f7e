import type { Logger } from 'pino';

/**
 * One part of the node process (proxy, Docker plugin, reconciler, policy,
 * BGP, embedded etcd...). The node starts components in order and stops them
 * in reverse order, so a later component may rely on an earlier one.
 */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  /** Idempotent; must not throw when start() never ran or failed half way. */
  stop(): Promise<void>;
}

export interface ComponentContext {
  log: Logger;
}
