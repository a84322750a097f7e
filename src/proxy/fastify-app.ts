import type http from 'node:http';
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import httpProxy from '@fastify/http-proxy';
import type { Dispatcher } from 'undici';
import type { Upstream } from './upstream';
import { endToEndHeaders, hasHeader, isChunked } from './headers';
import { requestHasBody, sendDockerError } from './pass-through';

/**
 * The ordinary (streamed) pass-through on fastify + @fastify/http-proxy.
 *
 * fastify routes every non-Upgrade request: its onRequest hook (installed by
 * the proxy) claims intercepted calls; everything else reaches
 * @fastify/http-proxy's catch-all route, whose reply-from does the call to
 * dockerd through `ReplyFromUpstream` below and hands the answer to
 * `replyOptions.onResponse`.
 *
 * What stays hand-written, and why (byte-exact fidelity to dockerd):
 * - the wire side of the upstream call (`ReplyFromUpstream.request`): reply-from
 *   builds upstream headers from `{...req.headers}` (repeated headers joined
 *   with ", ", names lower-cased: BuildKit's repeated
 *   X-Docker-Expose-Session-Grpc-Method), rebuilds the path through WHATWG URL
 *   (normalises '%xx', dots), and undici's request() gives back neither the raw
 *   header lines nor the status text. So reply-from is given a dispatcher that
 *   forwards the client's own request line and rawHeaders, and returns dockerd's
 *   raw header lines and status text with the body stream.
 * - writing the head (`onResponse`): reply.hijack() + raw.writeHead + flushHeaders,
 *   so /wait headers reach the CLI before the body (fastify would hold them
 *   until the first byte) and repeated response headers stay separate lines;
 *   a HEAD answer keeps dockerd's Content-Length (no auto-HEAD rewrite); a
 *   close-delimited answer (no Content-Length, not chunked) stays unframed.
 * - hijacked (Upgrade) calls never reach fastify: server.on('upgrade') (hijack.ts).
 * - requests fastify or reply-from refuse before any byte went upstream
 *   (URLs its router or destination checks reject: '//x', '..' segments, bad
 *   percent-encoding; methods it does not route; invalid Content-Type) go through
 *   the node:http pass-through (pass-through.ts): dockerd decides, as it would
 *   without the proxy.
 */

/** Carried from rewriteRequestHeaders to the dispatcher in the headers object (Object.assign copies symbols). */
const CALL = Symbol('calico.proxy.call');
/** Carried from the dispatcher to onResponse in the response headers object. */
const ANSWER = Symbol('calico.proxy.answer');

/** How much of dockerd's answer may wait for a slow client before dockerd is paused. */
const RESPONSE_QUEUE = 1024 * 1024;

/** Per request: the raw client request/response and what became of the call. */
export interface CallState {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  status: number;
  /** dispatch() refused the request synchronously (malformed): 400, not 502. */
  refused?: boolean;
}

const STATE = Symbol('calico.proxy.state');
type WithState = http.IncomingMessage & { [STATE]?: CallState };

export function callState(req: http.IncomingMessage, res: http.ServerResponse): CallState {
  const r = req as WithState;
  r[STATE] ??= { req, res, status: 0 };
  return r[STATE];
}

interface Answer {
  rawHeaders: string[];
  statusText: string;
}

interface ReplyFromRequest {
  method: string;
  headers: Record<string | symbol, unknown>;
}
type ReplyFromCallback = (err: Error | null, res?: { statusCode: number; headers: Record<string | symbol, unknown>; body: Readable }) => void;

/**
 * What reply-from calls instead of undici's Pool#request (it accepts any
 * object with a request method). Streams the client's request (line and raw
 * headers verbatim, body untouched) on the shared pool and answers with a
 * body stream that applies backpressure end to end.
 */
export class ReplyFromUpstream {
  constructor(private readonly up: Upstream) {}

  request(opts: ReplyFromRequest, cb: ReplyFromCallback): void {
    const call = opts.headers[CALL] as CallState;
    const { req, res } = call;
    let abort: ((err?: Error) => void) | undefined;
    let resumeUpstream: (() => void) | undefined;
    let body: Readable | undefined;
    let answered = false;
    let complete = false;

    const onClientClose = () => {
      // `docker events` ^C, `logs -f` ^C: let go of the upstream connection too.
      if (!res.writableFinished && !complete) abort?.(new Error('client closed the connection'));
    };
    res.once('close', onClientClose);

    const handler: Dispatcher.DispatchHandlers = {
      onConnect(a) {
        abort = a;
        if (res.destroyed && !res.writableFinished) a(new Error('client closed the connection'));
      },
      onHeaders(statusCode, rawHeaders, resume, statusText) {
        resumeUpstream = resume;
        body = new Readable({
          highWaterMark: RESPONSE_QUEUE,
          read() {
            resumeUpstream?.();
          },
          destroy(err, done) {
            if (!complete) abort?.(err ?? new Error('client closed the connection'));
            done(err);
          },
        });
        const answer: Answer = { rawHeaders: (rawHeaders as Buffer[]).map((b) => b.toString('latin1')), statusText };
        answered = true;
        cb(null, { statusCode, headers: { [ANSWER]: answer }, body });
        return true;
      },
      onData(chunk) {
        return body!.push(chunk);
      },
      onComplete() {
        complete = true;
        body!.push(null);
      },
      onError(err) {
        complete = true;
        if (answered) body!.destroy(err);
        else cb(err);
      },
    };

    try {
      this.up.pool.dispatch(
        {
          method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
          path: req.url ?? '/',
          headers: endToEndHeaders(req.rawHeaders),
          body: requestHasBody(req) ? req : null,
        },
        handler,
      );
    } catch (e) {
      // undici refuses some malformed requests synchronously.
      call.refused = true;
      cb(e as Error);
    }
  }
}

/** replyOptions.onResponse: the status line and headers go out the moment dockerd sent them. */
function onResponse(request: FastifyRequest, reply: FastifyReply, upstream: { statusCode: number; headers: Record<string | symbol, unknown>; stream: Readable }): void {
  reply.hijack();
  const res = reply.raw;
  const call = callState(request.raw, res);
  const stream = upstream.stream;
  const answer = upstream.headers[ANSWER] as Answer;
  call.status = upstream.statusCode;
  stream.on('error', (err) => {
    // Mid-stream: dockerd went away (or the client did). Cut the client off so
    // it sees an error instead of a silently truncated stream.
    if (!res.destroyed) res.destroy(err);
  });
  if (res.destroyed || res.headersSent) {
    // The client left, or reply-from already answered (it refuses a status
    // fastify cannot set and calls onError before onResponse).
    stream.destroy();
    return;
  }
  const raw = answer.rawHeaders;
  const method = request.raw.method ?? 'GET';
  const status = upstream.statusCode;
  const bodyless = method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
  if (!bodyless && !isChunked(raw) && !hasHeader(raw, 'content-length')) {
    // dockerd's close-delimited answer (hijack without Upgrade from old
    // clients): keep it unframed, as dockerd sent it, and close at the end.
    res.useChunkedEncodingByDefault = false;
    res.shouldKeepAlive = false;
  }
  res.writeHead(status, answer.statusText || undefined, endToEndHeaders(raw));
  res.flushHeaders();
  res.once('close', () => {
    if (!res.writableFinished) stream.destroy();
  });
  stream.pipe(res);
}

export interface FastifyProxyHooks {
  upstream: Upstream;
  /** Runs first for every routed request; returns true when it has taken the request over. */
  claim(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  /** A request fastify will not proxy itself: through the node:http pass-through. */
  fallback(req: http.IncomingMessage, res: http.ServerResponse): void;
  clientError(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void;
}

/** The fastify instance around an existing node server (so the server's Docker-friendly options stay as they are). */
export async function buildFastifyProxy(server: http.Server, hooks: FastifyProxyHooks): Promise<FastifyInstance> {
  // node:http answers an Expect other than 100-continue with a bare 417 before
  // any route runs; dockerd refuses it too, so answer in Docker's shape.
  server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const expect = String(req.headers.expect ?? '').slice(0, 100);
    sendDockerError(res, 417, `calico proxy: unsupported Expect header ${JSON.stringify(expect)}: only 100-continue is understood`);
    res.on('finish', () => req.resume());
  });
  const app = Fastify({
    // Our own server (listener.ts): requestTimeout 0, keepAliveTimeout 0,
    // insecureHTTPParser, no Host required, 1 MiB headers, allowHalfOpen for
    // https. fastify sets no timeouts on a server it did not create.
    serverFactory: (handler) => {
      server.on('request', handler);
      return server;
    },
    logger: false,
    // Nothing is parsed: pass-through bodies stream, intercepted bodies are
    // read (and limited) by intercepted.ts before fastify's parsers would run.
    bodyLimit: 1024 * 1024,
    // HEAD is proxied like any call: dockerd's Content-Length must survive.
    exposeHeadRoutes: false,
    return503OnClosing: false,
    clientErrorHandler: (err, socket) => hooks.clientError(err as NodeJS.ErrnoException, socket),
    // A URL fastify's router refuses (bad percent-encoding...) never reaches
    // the onRequest hook: interceptors still get their say, then dockerd decides.
    frameworkErrors: (_err, req, reply) => {
      reply.hijack();
      callState(req.raw, reply.raw);
      if (!hooks.claim(req.raw, reply.raw)) hooks.fallback(req.raw, reply.raw);
    },
  });
  // No built-in parser may consume a pass-through body (text/plain, JSON):
  // @fastify/http-proxy adds its own catch-all that hands the raw stream on.
  app.removeAllContentTypeParsers();
  app.addHook('onRequest', (request, reply, done) => {
    callState(request.raw, reply.raw);
    if (hooks.claim(request.raw, reply.raw)) {
      reply.hijack();
      return;
    }
    done();
  });
  app.setNotFoundHandler((request, reply) => {
    reply.hijack();
    hooks.fallback(request.raw, reply.raw);
  });
  app.setErrorHandler((err, request, reply) => {
    if (!reply.raw.headersSent && !reply.sent) {
      // Refused by fastify/reply-from before anything went upstream (e.g. its
      // destination checks): forward it untouched; dockerd decides.
      reply.hijack();
      hooks.fallback(request.raw, reply.raw);
      return;
    }
    reply.hijack();
    sendDockerError(reply.raw, 500, `calico proxy: ${err instanceof Error ? err.message : String(err)}`);
  });
  const up = hooks.upstream;
  await app.register(httpProxy, {
    upstream: 'http://localhost',
    prefix: '/',
    httpMethods: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
    disableRequestLogging: true,
    internalRewriteLocationHeader: false,
    // reply-from takes any object with request() as its undici dispatcher.
    undici: new ReplyFromUpstream(up) as unknown as Dispatcher,
    replyOptions: {
      rewriteRequestHeaders: (request: FastifyRequest) => ({ [CALL]: callState(request.raw, (request.raw as WithState)[STATE]!.res) }) as unknown as http.IncomingHttpHeaders,
      // Never retry: a repeated POST (or a GET answered 503) would reach dockerd twice.
      retryDelay: () => null,
      onResponse: onResponse as never,
      onError: (reply: FastifyReply, { error }: { error: Error & { cause?: Error } }) => {
        reply.hijack();
        const res = reply.raw;
        const call = callState(reply.request.raw, res);
        if (res.destroyed || res.writableEnded) return;
        const err = error.cause ?? error;
        if (call.refused) {
          call.status = 400;
          sendDockerError(res, 400, `calico proxy: cannot forward request: ${err.message}`);
        } else {
          call.status = 502;
          sendDockerError(res, 502, `calico proxy: cannot reach Docker at ${up.label}: ${err.message}`);
        }
      },
    },
  } as never);
  await app.ready();
  return app;
}

