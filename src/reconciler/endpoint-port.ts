import type { EndpointRecord } from './container-endpoint';

/**
 * What the start interceptor, the reconciler and calicoctl need from the
 * endpoint store (the datastore's EndpointStore, adapted in ./endpoint-store-adapter).
 */
export interface EndpointPort {
  listByHost(host: string): Promise<EndpointRecord[]>;
  /** Replaces every endpoint recorded for (host, workload) with this one. */
  put(ep: EndpointRecord): Promise<void>;
  /** Removes every endpoint of (host, workload). Idempotent: returns how many went. */
  removeWorkload(host: string, workloadId: string): Promise<number>;
}
