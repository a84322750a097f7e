import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Upstream } from './upstream';
import { requestHead } from './headers';
import { dockerErrorBody } from './interceptor';

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
 * A hijacked call (attach, exec start, /session, /grpc: `Upgrade: tcp|h2c`):
 * the client's request head is replayed verbatim on a fresh socket to
 * dockerd, followed by the bytes that came with it (`head`: the exec-start
 * JSON, early stdin, the Jenkins connector's stray "\n"), and from then on the
 * two sockets are spliced. dockerd's answer, `101 UPGRADED` or an error such
 * as 409, reaches the client byte for byte: nothing re-frames it.
 *
 * The head and its body go to dockerd in ONE write. dockerd discards what it
 * read together with the request head when it hijacks the connection, and
 * hands anything that arrives in a later read to the container as stdin
 * (verified here: an attach body sent in a second segment is read by the
 * container's shell). So a declared Content-Length body that the client sent
 * in pieces is gathered first (up to BODY_WAIT_MS) and sent with the head: a
 * well-framed request, as the docker CLI and dockerode send it in one segment.
 *
 * Each direction is closed on its own: the CLI half-closes right after
 * attaching when it has no stdin, and at stdin EOF with -i, and still reads
 * until dockerd is done; when dockerd closes, the client's side is ended so
 * `-it` sessions return at once.
 */
export function hijack(up: Upstream, req: IncomingMessage, client: Duplex, head: Buffer, log: Logger, done: (status: number) => void): void {
  // https upgrade sockets default to allowHalfOpen=false: Node would end our
  // side when the client sends EOF, and output after stdin EOF would be lost.
  (client as Socket).allowHalfOpen = true;
  (client as Socket).setTimeout?.(0);
  (client as Socket).setNoDelay?.(true);
  const upstream = up.connectRaw();
  let status = 0;
  let finished = false;
  const finish = () => {
    if (!finished) {
      finished = true;
      done(status);
    }
  };

  // Gather the declared body while dockerd's socket connects.
  const want = declaredBody(req.headers);
  const first: Buffer[] = [head];
  let have = head.length;
  let clientEnded = false;
  let gathered = have >= want;
  let connected = false;
  let waitTimer: NodeJS.Timeout | undefined;
  const onData = (c: Buffer) => {
    first.push(c);
    have += c.length;
    if (have >= want) bodyReady();
  };
  const onEnd = () => {
    clientEnded = true;
    bodyReady();
  };
  function bodyReady(): void {
    if (gathered) return;
    gathered = true;
    clearTimeout(waitTimer);
    client.off('data', onData);
    client.off('end', onEnd);
    client.pause();
    splice();
  }
  if (!gathered) {
    client.on('data', onData);
    client.on('end', onEnd);
    waitTimer = setTimeout(bodyReady, BODY_WAIT_MS);
  }
  function splice(): void {
    if (!gathered || !connected) return;
    // One write: head, body and whatever else came with them.
    upstream.write(Buffer.concat([Buffer.from(requestHead(req.method ?? 'POST', req.url ?? '/', req.rawHeaders), 'latin1'), ...first]));
    if (clientEnded) upstream.end();
    else client.pipe(upstream);
    upstream.pipe(client);
  }

  upstream.once('connect', () => {
    connected = true;
    splice();
  });
  upstream.once('data', (chunk: Buffer) => {
    const m = /^HTTP\/\d\.\d (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'));
    status = m ? Number(m[1]) : 0;
  });
  upstream.on('error', (err) => {
    if (!upstream.bytesRead && !client.destroyed && (client as Socket).bytesWritten === 0) {
      // dockerd unreachable: answer in Docker's shape; the CLI prints it.
      const body = dockerErrorBody(`calico proxy: cannot reach Docker at ${up.label}: ${err.message}`);
      client.end(
        `HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n` +
          body.toString(),
      );
      status = 502;
    } else {
      log.debug({ err: err.message, url: req.url }, 'hijacked stream: Docker side failed');
      client.destroy();
    }
    finish();
  });
  client.on('error', (err) => {
    log.debug({ err: err.message, url: req.url }, 'hijacked stream: client side failed');
    clearTimeout(waitTimer);
    upstream.destroy();
    finish();
  });
  upstream.on('close', () => {
    // dockerd closed without a FIN on our read side (RST): nothing more will come.
    if (!client.writableEnded) client.end();
    finish();
  });
  client.on('close', () => {
    clearTimeout(waitTimer);
    // Both directions of the client are done (or it vanished): nobody is left to read dockerd's side.
    upstream.destroy();
    finish();
  });
}
