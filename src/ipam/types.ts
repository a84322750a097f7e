// The IPAM API the rest of the product calls (proxy create interceptor, Docker
// IPAM driver, reconciler, calicoctl). Implemented in ./ipam.ts on etcd.
// This file is the contract: change it only together with its callers.

export type { Family } from '../address/cidr';
import type { Family } from '../address/cidr';

/** What to allocate for one owner (handle) on one host. */
export interface AllocateRequest {
  /**
   * The owner. The proxy reserves before the container exists, so it uses a
   * reservation id ("resv-<uuid>") that it also puts on the container as a
   * label; the IPAM driver uses "docker-<uuid>" ids. One handle may own
   * several addresses (dual stack); release by handle frees them together.
   */
  handle: string;
  /** Hostname of the node allocating (block affinity). */
  host: string;
  /** 'auto' or an explicit IPv4 address. Omit for none. */
  ipv4?: 'auto' | string;
  /** 'auto' or an explicit IPv6 address. Omit for none. */
  ipv6?: 'auto' | string;
  /**
   * Facts stored with the allocation (source, name...). `container` is the
   * owner's full container id: the proof of ownership (see ./owner.ts).
   */
  attrs?: Record<string, string>;
}

export interface Allocation {
  address: string; // canonical text form, no prefix length
  family: Family;
  handle: string;
  host: string; // host whose request allocated it (not necessarily block owner)
  pool: string; // CIDR of the pool it came from
  block: string; // CIDR of the block it lives in
  attrs: Record<string, string>;
}

export type IpamErrorCode =
  | 'IN_USE' // explicit address owned by another handle (message names the owner)
  | 'NOT_IN_POOL' // explicit address outside every pool (message names the pools)
  | 'EXHAUSTED' // no free address in any pool of that family (message names the full pools)
  | 'NO_POOL' // no pool of the requested family exists
  | 'INVALID' // malformed request
  | 'CONFLICT' // CAS retries exhausted
  | 'UNAVAILABLE'; // datastore unreachable (message names the endpoints)

export class IpamError extends Error {
  constructor(readonly code: IpamErrorCode, message: string, readonly owner?: string) {
    super(message);
    this.name = 'IpamError';
  }
}

export interface Ipam {
  /** All-or-none: if any requested family fails, nothing stays allocated. */
  allocate(req: AllocateRequest): Promise<Allocation[]>;
  /** Releases every address of the handle. Idempotent: returns how many were freed (0 if none). */
  releaseByHandle(handle: string): Promise<number>;
  /**
   * Releases one address if, and only if, it is still owned by `handle`
   * (a stale release never frees a re-allocated address). Idempotent.
   */
  releaseAddress(address: string, handle: string): Promise<boolean>;
  /** Merges attrs into every allocation of the handle (e.g. the container id once known). */
  setAttrs(handle: string, attrs: Record<string, string>): Promise<void>;
  listByHost(host: string): Promise<Allocation[]>;
  listByHandle(handle: string): Promise<Allocation[]>;
  /** The current owner of an address, if allocated. */
  lookup(address: string): Promise<Allocation | undefined>;

  // Collection of what dead processes left (the reconciler's sweep decides
  // what is stale; optional so that stand-ins of the IPAM need not have them).
  /** Block affinities that are pending, or name a block that is missing or another host's (any host). */
  listStaleAffinities?(): Promise<StaleAffinity[]>;
  /**
   * Finishes or withdraws one such affinity if it still has `revision`:
   * confirmed when its block now names its host, deleted otherwise.
   */
  settleAffinity?(a: StaleAffinity): Promise<'confirmed' | 'removed' | 'changed'>;
  /** Blocks inside no pool (a `pool remove` cut short). */
  listOrphanBlocks?(): Promise<OrphanBlock[]>;
  /** Removes such a block if it still has `revision` and holds no address. */
  removeOrphanBlock?(b: OrphanBlock): Promise<'removed' | 'changed'>;
}

/** A block that lies in no pool of its family. */
export interface OrphanBlock {
  family: Family;
  /** The block's CIDR. */
  block: string;
  /** The host with its affinity, if any. */
  host?: string;
  /** Addresses allocated in it. */
  allocations: number;
  /** Mod revision of the block when listed: the guard of removeOrphanBlock. */
  revision: string;
}

/** A block affinity that no live claim protocol step would leave as it is for long. */
export interface StaleAffinity {
  host: string;
  family: Family;
  /** The block's CIDR. */
  block: string;
  state: 'pending' | 'confirmed';
  /** Written by the claiming process (its clock); informative only. */
  since: number;
  /** Mod revision of the affinity key when listed: the guard of settleAffinity. */
  revision: string;
  /** Why it is stale. */
  reason: 'pending' | 'block missing' | 'block of another host';
}
