// Who owns an address: the container id IPAM recorded on the allocation
// (attribute "container"), written when the container's create was answered
// (proxy reservations) or when it started (addresses Docker's IPAM driver
// calls allocated). A label on a container is anyone's to set and `docker
// commit` copies it: it names a handle, never proves ownership. Pure.
import type { Allocation } from './types';

/** The allocation attribute holding the owner's full container id. */
export const OWNER_ATTR = 'container';
/** The allocation attribute holding the owner's container name, when known. */
export const OWNER_NAME_ATTR = 'name';

/** The container id IPAM recorded as the owner of a handle's allocations, if any. */
export function recordedOwner(allocs: Pick<Allocation, 'attrs'>[]): string | undefined {
  return allocs.map((a) => a.attrs?.[OWNER_ATTR]).find((c): c is string => !!c);
}

/** "container web1 (3ce2b578b98f)", "container 3ce2b578b98f", or undefined when no owner is recorded. */
export function ownerName(attrs: Record<string, string> | undefined, name?: string): string | undefined {
  const id = attrs?.[OWNER_ATTR];
  const n = (name ?? attrs?.[OWNER_NAME_ATTR])?.replace(/^\//, '');
  if (id) return n ? `container ${n} (${id.slice(0, 12)})` : `container ${id.slice(0, 12)}`;
  return undefined;
}

/**
 * Why an explicit address cannot be had, naming its owner as an operator
 * would look it up: "address 192.168.1.5 belongs to container group1-node1
 * (3ce2b578b98f); remove it first".
 */
export function addressTakenMessage(address: string, owner: Pick<Allocation, 'attrs' | 'handle' | 'host'>, here: string, name?: string): string {
  const who = ownerName(owner.attrs, name);
  const where = owner.host && owner.host !== here ? ` on host ${owner.host}` : '';
  if (who) return `address ${address} belongs to ${who}${where}; remove it first`;
  const creating = owner.attrs?.[OWNER_NAME_ATTR];
  if (creating) return `address ${address} is reserved for container ${creating} being created${where} (handle ${owner.handle}); remove it first`;
  return `address ${address} is held by handle ${owner.handle}${where}, whose container is not recorded yet; remove that container first`;
}
