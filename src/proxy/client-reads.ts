import net from 'node:net';
import { SPLICE_CHUNK } from './upstream';

/**
 * A plain (not TLS) accepted client socket, made again around the same
 * handle so that it reads into one buffer of its own (net's `onread`, as
 * dockerd's side does: upstream.ts) instead of a new one per read. node's
 * server cannot be asked for that; so the accepted socket stops reading
 * before its first read (that comes on a later tick) and gives its handle
 * to a socket made with `onread`, which counts for the server as the
 * accepted one did (`_server`: server.close() waits for it).
 *
 * Why: every upload (`docker cp` in, build contexts, `docker load`) came as
 * one fresh 64 KiB buffer per read, and in a heap the node's size those
 * started V8 full collections every few dozen MiB (bench/proxy, README). With
 * one buffer per connection the upload allocates nothing in the heap.
 *
 * `read(view)`: the view is valid until it returns; whoever keeps bytes past
 * that copies them, and a write that queues pauses the socket (backpressure.ts).
 * Undefined when the socket is not a plain one (TLS: fresh buffers, as before).
 */
export function readIntoOneBuffer(accepted: net.Socket, server: net.Server, read: (view: Buffer) => void): net.Socket | undefined {
  const internal = accepted as unknown as { _handle?: { readStop(): number; reading: boolean } | null; _server?: net.Server };
  const handle = internal._handle;
  if (!handle || accepted.constructor !== net.Socket || typeof handle.readStop !== 'function') return undefined;
  handle.reading = false;
  handle.readStop();
  internal._handle = null;
  const buffer = Buffer.allocUnsafe(SPLICE_CHUNK);
  const s = new net.Socket({ handle, allowHalfOpen: true, readable: true, writable: true, onread: { buffer, callback: (n: number) => (read(buffer.subarray(0, n)), true) } } as net.SocketConstructorOpts);
  (s as unknown as { _server: net.Server })._server = server;
  return s;
}
