/**
 * An error meant for the person at the terminal: printed as is (no stack) to
 * stderr, and the process exits with `exitCode` (1 by default, 2 where root is
 * required and missing, as calicoctl did in 2015).
 */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new CliError(`${what} must be run as root.`, 2);
  }
}

/**
 * Maps errors that are expected in normal use (etcd down, bad endpoint
 * configuration) to a message for a person; returns undefined for anything
 * else, which main() reports with its stack as a bug.
 */
export function describeError(e: unknown): CliError | undefined {
  if (!(e instanceof Error)) return undefined;
  if (e.name === 'EndpointError') return new CliError(e.message);
  if (isDatastoreUnavailable(e)) {
    const endpoints = (e as { endpoints?: unknown }).endpoints;
    return new CliError(etcdUnavailableMessage(Array.isArray(endpoints) ? endpoints.map(String) : [], e.message));
  }
  // The datastore and IPAM word their errors for people (what failed on what).
  if (e.name === 'DatastoreError' || e.name === 'IpamError') return new CliError(capitalise(e.message));
  return undefined;
}

/** The 2015 wording ("Error accessing etcd (...).  Is etcd running?"), naming the endpoints tried. */
export function etcdUnavailableMessage(endpoints: string[], detail: string): string {
  const where = endpoints.length ? ` at ${endpoints.join(', ')}` : '';
  return `Error accessing etcd${where} (${detail.replace(/\.$/, '')}). Is etcd running?`;
}

function isDatastoreUnavailable(e: Error): boolean {
  const code = (e as { code?: unknown }).code;
  if (code === 'UNAVAILABLE') return true;
  // Raw etcd3 client errors that escaped the datastore layer: gRPC transport failures.
  return /^GRPC(Unavailable|DeadlineExceeded|Connect|Cancelled)/.test(e.name) || e.name === 'ClientClosedError';
}

export function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
