import type { Logger } from 'pino';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * The seam between the proxy's plumbing and Calico's logic. One module per
 * intercepted Docker call implements Interceptor (create, start); the proxy
 * knows nothing about Calico and the interceptors know nothing about sockets.
 */
export interface InterceptContext {
  method: string; // 'POST'
  /** Unversioned, decoded, no query: '/containers/create', '/containers/abc/start'. */
  path: string;
  /** '1.41' when the client used /v1.41/...; undefined for unversioned paths. */
  apiVersion?: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  log: Logger;
}

export type RequestDecision =
  /**
   * Forward the original bytes untouched. `untouched`: nor is dockerd's
   * answer this interceptor's: it streams to the client as a forwarded one
   * does (onResponse is not called), no gathering, no second look.
   */
  | { action: 'pass'; untouched?: boolean }
  /** Forward this body instead (Content-Length recomputed, Transfer-Encoding dropped). */
  | { action: 'forward'; body: Buffer; state?: unknown }
  /** Answer without dockerd, in Docker's error shape {"message": ...}. */
  | { action: 'reply'; status: number; message: string };

export type UpstreamOutcome =
  /** dockerd's buffered answer. */
  | { status: number; headers: IncomingHttpHeaders; body: Buffer }
  /** dockerd unreachable / connection failed. */
  | { error: Error };

export interface InterceptorResponse {
  status: number;
  body: Buffer;
  headers?: Record<string, string>;
}

export interface Interceptor {
  readonly name: string;
  /**
   * Only requests for which this returns true have their body buffered (up to
   * MAX_INTERCEPTED_BODY). Never claim hijacked or streaming calls: create and
   * start answer small JSON or 204.
   */
  matches(method: string, path: string): boolean;
  /** Absent: the request goes on as it came (an interceptor of answers only). */
  onRequest?(ctx: InterceptContext, body: Buffer): Promise<RequestDecision>;
  /**
   * Called once dockerd answered (or failed) a request this interceptor let
   * through (pass or forward). May return a replacement response; returning
   * void passes dockerd's answer through unchanged. Called for errors too, so
   * reservations can be undone. A throw here is logged and dockerd's answer
   * passes through.
   */
  onResponse?(ctx: InterceptContext, outcome: UpstreamOutcome, state: unknown): Promise<InterceptorResponse | void>;
}

/** Bodies of intercepted calls are small JSON; anything larger is refused, not buffered. */
export const MAX_INTERCEPTED_BODY = 4 * 1024 * 1024;

/** Docker's error body: the docker CLI prints `Error response from daemon: <message>`. */
export function dockerErrorBody(message: string): Buffer {
  return Buffer.from(JSON.stringify({ message }) + '\n');
}

/** A complete Docker-style error response, ready for InterceptorResponse. */
export function dockerError(status: number, message: string): InterceptorResponse {
  return { status, body: dockerErrorBody(message), headers: { 'Content-Type': 'application/json' } };
}
