// The contract between the datastore syncer and its consumers (NAT outgoing,
// policy, BGP). The syncer reads a consistent snapshot of the keys it serves,
// then follows an etcd watch from that revision; on compaction or reconnect
// it resyncs and reports a fresh snapshot. Consumers compute what they need
// from the snapshot (pure functions) and are told what changed.
import type { Endpoint } from '../datastore/endpoint-store';
import type { Host } from '../datastore/host-store';
import type { Pool } from '../datastore/pool-store';
import type { Profile } from '../datastore/profile-store';

/** The kinds of data the syncer serves; `config` is every /calico/v1/config/* key (BGP and felix settings). */
export type SyncedKind = 'pools' | 'hosts' | 'endpoints' | 'profiles' | 'config';

export interface DatastoreSnapshot {
  /** The etcd revision this snapshot is consistent at. */
  revision: string;
  /** By pool CIDR (canonical text). */
  pools: ReadonlyMap<string, Pool>;
  /** By host name: bird_ip, bird6_ip, bgp_as. */
  hosts: ReadonlyMap<string, Host>;
  /** By endpoint key (keys.endpoint(host, container, endpoint)). */
  endpoints: ReadonlyMap<string, Endpoint>;
  /** By profile name; a profile with only one of tags/rules present has the default for the other. */
  profiles: ReadonlyMap<string, Profile>;
  /**
   * Every raw value under the served prefixes that has no typed view above
   * (e.g. /calico/v1/config/bgp_as, bgp_peer_rr_v4/<ip>, host/<h>/bgp_peer_v4/<ip>),
   * by key: consumers decode what they own with the datastore's schemas.
   */
  raw: ReadonlyMap<string, string>;
}

export type SyncerEvent =
  /** A full, consistent view: at start, and after every resync (compaction, reconnect). */
  | { type: 'snapshot'; snapshot: DatastoreSnapshot }
  /** One or more watch events applied; `snapshot` already includes them. */
  | { type: 'update'; snapshot: DatastoreSnapshot; changed: ReadonlySet<SyncedKind>; keys: readonly string[] };

export interface DatastoreSyncer {
  /** The listener gets the current snapshot at once (if synced) and every event after. Returns an unsubscribe. */
  subscribe(listener: (e: SyncerEvent) => void): () => void;
  /** The latest snapshot, undefined before the first sync. */
  current(): DatastoreSnapshot | undefined;
  /** Resolves with the first snapshot. */
  whenSynced(): Promise<DatastoreSnapshot>;
}
