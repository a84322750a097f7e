// The datastore syncer: typed snapshots of /calico/v1 kept current by an etcd watch.
export * from './types';
export { Syncer, SyncerOptions } from './syncer';
export { SyncState, KeyChange, DecodeKv, SERVED_PREFIX, kindOf } from './state';
