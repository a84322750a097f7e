// The shared test harness: real components, started per test file, torn down
// even when a test fails. Later issues add etcd (single member and a
// three-member cluster on loopback) and network-namespace hosts beside these.
export * from './exec';
export * from './teardown';
export * from './dockerd';
export * from './image';
export * from './certs';
export * from './etcd';
export * from './netns';

/** True when the process can do what integration tests need (root: dockerd, netns, iptables). */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

import path from 'node:path';
/** Compiled calicoctl entry point, relative to this compiled file (works for any outDir). */
export const CALICOCTL_MAIN = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');
