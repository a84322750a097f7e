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
const STATUS: Record<string, number> = { IN_USE: 409, NOT_IN_POOL: 400, INVALID: 400, NO_POOL: 400, EXHAUSTED: 503, CONFLICT: 503, UNAVAILABLE: 503 };
const HINT: Record<string, string> = {
  EXHAUSTED: ' (remove containers or add a pool with `calicoctl pool add <CIDR>`)',
  CONFLICT: ' (the datastore is busy; retry)',
};

export function refusalForIpamError(e: unknown, what: string): Refusal {
  if (e instanceof IpamError && STATUS[e.code]) return { status: STATUS[e.code], message: `${what}: ${e.message}${HINT[e.code] ?? ''}` };
  return { status: 500, message: `${what}: ${(e as Error)?.message ?? String(e)}` };
}
