// Pure: may the container Docker is starting have an explicit address that
// IPAM already holds for a container of this host (a reservation of the
// proxy, `calicoctl container add`)? Docker's IPAM call names no container,
// so the answer comes from what dockerd lists (a lock-free read while it is
// starting a container): the address's recorded owner is the only container
// that may take it. When other containers also ask for the address in their
// configuration (`docker run --net calico --ip X` made one), the one being
// started is told apart by a probe (see IpamDriver): dockerd holds a
// container's lock while it starts it, so only that container's inspect
// does not answer.
import { canonicalAddress } from '../address/cidr';
import type { Allocation } from '../ipam/types';
import { OWNER_ATTR, addressTakenMessage } from '../ipam/owner';
import { HANDLE_LABEL, calicoNetworkName } from '../names';

/** What `GET /containers/json?all=1` says of a container (the parts used here). */
export interface ListedContainer {
  Id: string;
  Names?: string[];
  State?: string;
  Labels?: Record<string, string> | null;
  NetworkSettings?: { Networks?: Record<string, { IPAMConfig?: { IPv4Address?: string; IPv6Address?: string } | null } | undefined> | null } | null;
}

export type Claim =
  /** The owner is the one asking: the address is its. `adopt`: record this container as the owner first. */
  | { kind: 'accept'; adopt?: string }
  /** The owner, unless one of `others` is the container being started (then refuse with `message`). */
  | { kind: 'probe'; others: string[]; message: string }
  /** The recorded owner no longer exists: its handle is free to release, the address to allocate anew. */
  | { kind: 'owner-gone'; owner: string }
  | { kind: 'refuse'; message: string };

export function nameOf(c: ListedContainer): string {
  return (c.Names?.[0] ?? c.Id.slice(0, 12)).replace(/^\//, '');
}

/** Whether the container's configuration asks for `address` on the calico network. */
export function asksFor(c: ListedContainer, address: string): boolean {
  const ipam = c.NetworkSettings?.Networks?.[calicoNetworkName()]?.IPAMConfig;
  return [ipam?.IPv4Address, ipam?.IPv6Address].some((a) => !!a && canonical(a) === address);
}

function onCalico(c: ListedContainer): boolean {
  return !!c.NetworkSettings?.Networks?.[calicoNetworkName()];
}

function canonical(a: string): string {
  try {
    return canonicalAddress(a);
  } catch {
    return a;
  }
}

/**
 * The decision for `address`, held by `owner` (an allocation of this host
 * under a handle that is not the Docker driver's), given every container
 * dockerd lists, read after the allocation.
 */
export function claimHeldAddress(address: string, owner: Allocation, host: string, containers: ListedContainer[]): Claim {
  const byId = new Map(containers.map((c) => [c.Id, c]));
  let ownerId = owner.attrs[OWNER_ATTR];
  let adopt: string | undefined;
  if (!ownerId) {
    // The owner's id is recorded when its create is answered; until then a
    // fresh handle (unknown to anyone before that answer) on exactly one
    // container asking for the address names it.
    const labelled = containers.filter((c) => c.Labels?.[HANDLE_LABEL] === owner.handle && asksFor(c, address));
    if (labelled.length !== 1) return { kind: 'refuse', message: addressTakenMessage(address, owner, host) };
    ownerId = adopt = labelled[0].Id;
  }
  const oc = byId.get(ownerId);
  if (!oc) return { kind: 'owner-gone', owner: ownerId };
  const message = addressTakenMessage(address, { ...owner, attrs: { ...owner.attrs, [OWNER_ATTR]: ownerId } }, host, nameOf(oc));
  // A running owner on the calico network already has it: the request is
  // someone else's. A running owner not on it yet is being connected
  // (`calicoctl container add`, `docker network connect`), unless a container
  // being started asks for the address too (the probe below tells them apart).
  if (oc.State === 'running' && onCalico(oc)) return { kind: 'refuse', message };
  const others = containers.filter((c) => c.Id !== ownerId && c.State !== 'running' && asksFor(c, address)).map((c) => c.Id);
  if (others.length) return { kind: 'probe', others, message };
  return adopt ? { kind: 'accept', adopt } : { kind: 'accept' };
}
