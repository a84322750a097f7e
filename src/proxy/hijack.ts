import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Upstream } from './upstream';
import { requestHead } from './headers';
import { dockerErrorBody } from './interceptor';

/**
 * A hijacked call (attach, exec start, /session, /grpc: `Upgrade: tcp|h2c`):
 * the client's request head is replayed verbatim on a fresh socket to
 * dockerd, followed by the bytes that came with it (`head`: the exec-start
 * JSON, early stdin, the Jenkins connector's stray "\n"), and from then on the
 * two sockets are spliced. dockerd's answer, `101 UPGRADED` or an error such
 * as 409, reaches the client byte for byte: nothing re-frames it.
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

  upstream.once('connect', () => {
    upstream.write(requestHead(req.method ?? 'POST', req.url ?? '/', req.rawHeaders));
    if (head.length) upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
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
    upstream.destroy();
    finish();
  });
  upstream.on('close', () => {
    // dockerd closed without a FIN on our read side (RST): nothing more will come.
    if (!client.writableEnded) client.end();
    finish();
  });
  client.on('close', () => {
    // Both directions of the client are done (or it vanished): nobody is left to read dockerd's side.
    upstream.destroy();
    finish();
  });
}
