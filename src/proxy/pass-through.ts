import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Upstream } from './upstream';
import { endToEndHeaders, hasHeader, isChunked } from './headers';
import { dockerErrorBody } from './interceptor';

/** How much of dockerd's answer may wait for a slow client before dockerd is paused. */
const RESPONSE_QUEUE = 1024 * 1024;

/** No body may follow these, whatever the headers say. */
function bodyless(method: string, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
}

/** Whether the client sent a request body (Content-Length > 0 or chunked). */
export function requestHasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return Number(len) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/** A Docker-style error to a client whose response has not started yet. */
export function sendDockerError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = dockerErrorBody(message);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
  res.end(body);
}

/**
 * Streams one call to dockerd and its answer back, both directions without
 * buffering. The status line and headers go to the client the moment dockerd
 * sends them: the CLI's foreground `docker run` waits for the /wait headers
 * before it starts the container, so holding them until the first body byte
 * deadlocks it. Backpressure is end to end (a slow client pauses dockerd's
 * socket, a slow dockerd pauses the client's upload).
 *
 * Ordinary calls now go through fastify + @fastify/http-proxy (fastify-app.ts,
 * same wire behaviour); this one serves the requests fastify or reply-from
 * would refuse or rewrite, so that dockerd still sees them verbatim.
 */
export function passThrough(up: Upstream, req: IncomingMessage, res: ServerResponse): Promise<number> {
  return new Promise((resolve) => {
    const method = req.method ?? 'GET';
    let abort: ((err?: Error) => void) | undefined;
    let resumeUpstream: (() => void) | undefined;
    let status = 0;
    let clientGone = false;

    res.on('close', () => {
      if (!res.writableFinished) {
        clientGone = true;
        // `docker events` ^C, `logs -f` ^C: let go of the upstream connection too.
        abort?.(new Error('client closed the connection'));
        resolve(status || 499);
      }
    });

    const handler: Dispatcher.DispatchHandlers = {
      onConnect(a) {
        abort = a;
        if (clientGone) a(new Error('client closed the connection'));
      },
      onHeaders(statusCode, rawHeaders, resume, statusText) {
        status = statusCode;
        resumeUpstream = resume;
        const raw = (rawHeaders as Buffer[]).map((b) => b.toString('latin1'));
        if (!bodyless(method, statusCode) && !isChunked(raw) && !hasHeader(raw, 'content-length')) {
          // dockerd's close-delimited answer (hijack without Upgrade from old
          // clients): keep it unframed, as dockerd sent it, and close at the end.
          res.useChunkedEncodingByDefault = false;
          res.shouldKeepAlive = false;
        }
        res.writeHead(statusCode, statusText || undefined, endToEndHeaders(raw));
        res.flushHeaders();
        return true;
      },
      onData(chunk) {
        res.write(chunk);
        // Pausing dockerd's socket at Node's 16 KiB mark turns a 256 MiB
        // `docker cp` into thousands of pause/resume round trips; let a little
        // more queue up before pushing back.
        if (res.writableLength < RESPONSE_QUEUE) return true;
        res.once('drain', () => resumeUpstream?.());
        return false;
      },
      onComplete() {
        res.end();
        resolve(status);
      },
      onError(err) {
        if (clientGone) return;
        if (!res.headersSent) {
          sendDockerError(res, 502, `calico proxy: cannot reach Docker at ${up.label}: ${err.message}`);
          resolve(502);
        } else {
          // Mid-stream: dockerd went away. Cut the client off so it sees an
          // error instead of a silently truncated stream.
          res.destroy(err);
          resolve(status);
        }
      },
    };

    const hasBody = requestHasBody(req);
    try {
      up.pool.dispatch(
        {
          method: method as Dispatcher.HttpMethod,
          path: req.url ?? '/',
          headers: endToEndHeaders(req.rawHeaders),
          body: hasBody ? req : null,
        },
        handler,
      );
    } catch (e) {
      // undici refuses some malformed requests synchronously.
      sendDockerError(res, 400, `calico proxy: cannot forward request: ${(e as Error).message}`);
      resolve(400);
    }
    if (!hasBody) req.resume();
  });
}

export interface CollectedResponse {
  status: number;
  statusText: string;
  rawHeaders: string[];
  body: Buffer;
}

/** One call to dockerd with a buffered body and a buffered answer (intercepted calls only: small JSON). */
export function collect(up: Upstream, method: string, url: string, headers: string[], body: Buffer): Promise<CollectedResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let status = 0;
    let statusText = '';
    let rawHeaders: string[] = [];
    try {
      up.pool.dispatch(
        { method: method as Dispatcher.HttpMethod, path: url, headers, body: body.length ? body : null },
        {
          onConnect() {},
          onHeaders(s, h, _resume, t) {
            status = s;
            statusText = t;
            rawHeaders = (h as Buffer[]).map((b) => b.toString('latin1'));
            return true;
          },
          onData(c) {
            chunks.push(c);
            return true;
          },
          onComplete() {
            resolve({ status, statusText, rawHeaders, body: Buffer.concat(chunks) });
          },
          onError: reject,
        },
      );
    } catch (e) {
      reject(e);
    }
  });
}
