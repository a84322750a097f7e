// How an IPAM failure reaches the docker client: Docker's error shape
// ({"message": ...}) with the status a client can act on. Pure.
import { IpamError } from '../../ipam/types';

export interface Refusal {
  status: number;
  message: string;
}

/**
 * Status per IPAM failure:
 *  - IN_USE 409: the request conflicts with another container's address (like Docker's name conflict);
 *  - NOT_IN_POOL, NO_POOL, INVALID 400: the request cannot succeed as written;
 *  - EXHAUSTED 503: the request is fine, the pools are full (retry after removing containers or adding a pool);
 *  - CONFLICT, UNAVAILABLE 503: the datastore is busy or unreachable (retry later);
 *  - anything else 500.
 */
export function refusalForIpamError(e: unknown, what: string): Refusal {
  if (e instanceof IpamError) {
    const message = `${what}: ${e.message}`;
    switch (e.code) {
      case 'IN_USE':
        return { status: 409, message };
      case 'NOT_IN_POOL':
      case 'INVALID':
      case 'NO_POOL':
        return { status: 400, message };
      case 'EXHAUSTED':
        return { status: 503, message: `${message} (remove containers or add a pool with \`calicoctl pool add <CIDR>\`)` };
      case 'CONFLICT':
        return { status: 503, message: `${message} (the datastore is busy; retry)` };
      case 'UNAVAILABLE':
        return { status: 503, message };
    }
  }
  return { status: 500, message: `${what}: ${(e as Error)?.message ?? String(e)}` };
}
