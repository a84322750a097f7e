// The datastore layer: etcd access, key layout, typed stores.
export * from './errors';
export * from './keys';
export * from './schemas';
export * from './datastore';
export * from './pool-store';
export * from './endpoint-store';
export * from './host-store';
export * from './profile-store';
export * from './node-store';
export * from './layout-store';
