// Errors of the datastore layer. Callers switch on `code`; messages say what
// failed on which key or which etcd endpoints, ready to show to a user.

export type DatastoreErrorCode =
  | 'UNAVAILABLE' // etcd could not be reached in time (message names the endpoints tried)
  | 'TLS' // the TLS handshake failed: the server's certificate did not verify, or the server refused ours
  | 'CONFLICT' // compare-and-swap retries exhausted
  | 'INVALID_VALUE' // a stored value does not match its schema (message names the key)
  | 'INVALID_ARGUMENT' // a caller passed something malformed (bad CIDR, bad id...)
  | 'NOT_FOUND' // the object does not exist
  | 'REFUSED' // the request is understood but not allowed (overlapping pool, pool in use...)
  | 'FAILED'; // any other etcd error

export class DatastoreError extends Error {
  constructor(
    readonly code: DatastoreErrorCode,
    message: string,
    /** The key concerned, when there is one. */
    readonly key?: string,
  ) {
    super(message);
    this.name = 'DatastoreError';
  }
}

export function isUnavailable(e: unknown): boolean {
  return e instanceof DatastoreError && e.code === 'UNAVAILABLE';
}
