import type { IncomingMessage } from 'node:http';

/** A declared request body larger than this is not gathered (no hijacked call sends one); it streams as it comes. */
export const MAX_GATHERED_BODY = 1024 * 1024;
/** How long a hijacked call waits for the rest of a declared body before sending what it has. */
export const BODY_WAIT_MS = 500;

/**
 * How many bytes beyond the request head belong with it in the first write to
 * dockerd: the declared Content-Length body (dockerode's attach sends
 * `{"stream":true,...}`, exec start its JSON). Chunked or absent: nothing to
 * wait for. Pure.
 */
export function declaredBody(headers: IncomingMessage['headers']): number {
  if (headers['transfer-encoding'] !== undefined) return 0;
  const raw = headers['content-length'];
  const n = raw === undefined ? 0 : Number(raw);
  return Number.isInteger(n) && n > 0 && n <= MAX_GATHERED_BODY ? n : 0;
}

/**
 * Why a hijacked call's head and body go to dockerd in ONE write (splice.ts
 * does it): dockerd discards what it read together with the request head
 * when it hijacks the connection (attach, exec start, /session, /grpc), and
 * hands anything that arrives in a later read to the container as stdin
 * (verified here: an attach body sent in a second segment is read by the
 * container's shell; dockerode's attach sends `{"stream":true,...}`). So a
 * declared Content-Length body that the client sent in pieces is gathered
 * first (up to BODY_WAIT_MS) and sent with the head, as the docker CLI and
 * dockerode send it in one segment.
 */
