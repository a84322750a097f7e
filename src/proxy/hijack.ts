import type net from 'node:net';
import type { Head } from './framing';
import { header } from './framing';
import type { Pacer } from './backpressure';

/** A declared request body larger than this is not gathered (no hijacked call sends one); it streams as it comes. */
export const MAX_GATHERED_BODY = 1024 * 1024;
/** How long a hijacked call waits for the rest of a declared body before sending what it has. */
export const BODY_WAIT_MS = 500;

/**
 * How many bytes, head included, belong in the first write of an Upgrade
 * request: the head and its declared Content-Length body (dockerode's attach
 * sends `{"stream":true,...}`, exec start its JSON). Chunked or absent:
 * nothing to wait for.
 *
 * Why ONE write: dockerd discards what it read together with the request head
 * when it hijacks the connection, and hands anything that arrives in a later
 * read to the container as stdin (verified here: an attach body sent in a
 * second segment is read by the container's shell). So a body the client sent
 * in pieces is gathered first (up to BODY_WAIT_MS) and sent with the head, as
 * the docker CLI and dockerode send it in one segment. What the client sent
 * beyond that in the same gathering is dropped after a 101, as dockerd drops
 * it (Connection's `discard`); after any other answer it is the next request.
 */
export function firstWrite(h: Head): number {
  if (header(h.rawHeaders, 'transfer-encoding') !== undefined) return h.size;
  const raw = header(h.rawHeaders, 'content-length');
  const n = raw === undefined ? 0 : Number(raw);
  return h.size + (Number.isInteger(n) && n > 0 && n <= MAX_GATHERED_BODY ? n : 0);
}

/**
 * A hijacked call: from here the connection is a raw splice both ways, each
 * direction closed on its own (half-close: stdin's EOF must not cut the
 * container's output).
 */
export class Hijack {
  private open = true;

  constructor(
    private readonly client: net.Socket,
    private readonly docker: net.Socket,
    private readonly pacer: Pacer,
    private readonly count?: (delta: 1 | -1) => void,
  ) {
    count?.(1);
  }

  /** `answerRest`: dockerd's bytes after its answer head; `clientRest`: the client's bytes after its request. */
  start(answerRest: Buffer, clientRest: Buffer, clientEnded: boolean): void {
    this.pacer.toClient(this.docker, answerRest);
    this.pacer.toDocker(this.docker, clientRest);
    if (clientEnded) this.docker.end();
    if (!this.pacer.clientHeld) this.client.resume();
  }

  fromClient(b: Buffer): void {
    this.pacer.toDocker(this.docker, b);
  }

  fromDocker(b: Buffer): void {
    this.pacer.toClient(this.docker, b);
  }

  clientEnded(): void {
    this.docker.end();
  }

  dockerEnded(): void {
    if (!this.client.writableEnded) this.client.end();
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.count?.(-1);
  }
}
