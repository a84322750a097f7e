import type { EndpointRecord } from './container-endpoint';

/**
 * What the start interceptor, the reconciler and calicoctl need from the
 * endpoint store (the datastore's EndpointStore, adapted in ./endpoint-store-adapter).
 */
export interface EndpointPort {
  listByHost(host: string): Promise<EndpointRecord[]>;
  /**
   * Records the endpoint; an earlier record of the same workload that this
   * process wrote goes (older ones, from before a node restart, are the
   * sweep's to remove).
   */
  put(ep: EndpointRecord): Promise<void>;
  /** Removes one endpoint record. Idempotent. */
  removeEndpoint(ep: EndpointRecord): Promise<void>;
  /** Removes every endpoint of (host, workload). Idempotent: returns how many went. */
  removeWorkload(host: string, workloadId: string): Promise<number>;
}
