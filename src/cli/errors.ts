/**
 * An error meant for the person at the terminal: printed as is (no stack) to
 * stderr, and the process exits with `exitCode`. The exit codes of every
 * command (docs/calicoctl.md, "Exit codes"):
 *   0  done, or already so (removing what is absent, adding what is there);
 *   1  failed (etcd unreachable, a refusal by the datastore, something down);
 *   2  usage or permission (bad arguments or flags, root required).
 */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

/** Wrong arguments or flags: exit code 2, as commander's own usage errors. */
export class UsageError extends CliError {
  constructor(message: string) {
    // Named CliError still: a person reads the message, the exit code tells scripts.
    super(message, EXIT_USAGE);
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new CliError(`${what} must be run as root.`, EXIT_USAGE);
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
