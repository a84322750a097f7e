import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Upstream } from './upstream';
import type { Interceptor, InterceptContext, InterceptorResponse, RequestDecision, UpstreamOutcome } from './interceptor';
import { MAX_INTERCEPTED_BODY } from './interceptor';
import type { RequestTarget } from './request-target';
import { collect, CollectedResponse, sendDockerError } from './pass-through';
import { endToEndHeaders, headerObject } from './headers';

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.pause();
        reject(new BodyTooLarge(`request body is larger than ${limit} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** How much more of a refused upload is read (and dropped) before the connection is cut. */
const DISCARD_LIMIT = 64 * 1024 * 1024;

/**
 * Reads and drops the rest of an upload refused as too large, so that a
 * client still writing it reads the 413 instead of meeting EPIPE (the
 * connection cut under its write, the answer unread); cut past a bound.
 */
function discardRest(req: IncomingMessage): void {
  let left = DISCARD_LIMIT;
  const cut = setTimeout(() => req.destroy(), 10000);
  const stop = () => clearTimeout(cut);
  req.removeAllListeners('data');
  req.on('data', (c: Buffer) => {
    left -= c.length;
    if (left < 0) {
      stop();
      req.destroy();
    }
  });
  req.once('end', stop);
  req.once('close', stop);
  req.resume();
}

/**
 * An intercepted call (create, start): the body is buffered and handed to
 * the interceptor, which passes it, rewrites it or answers itself; dockerd's
 * answer is buffered and offered to the interceptor before the client sees it.
 * These calls answer small JSON or 204, never a stream.
 */
export async function intercepted(
  up: Upstream,
  icp: Interceptor,
  target: RequestTarget,
  req: IncomingMessage,
  res: ServerResponse,
  log: Logger,
): Promise<number> {
  const ctx: InterceptContext = {
    method: req.method ?? 'POST',
    path: target.path,
    apiVersion: target.apiVersion,
    query: target.query,
    headers: req.headers,
    log: log.child({ interceptor: icp.name }),
  };
  let body: Buffer;
  try {
    body = await readBody(req, MAX_INTERCEPTED_BODY);
  } catch (e) {
    const tooLarge = e instanceof BodyTooLarge;
    sendDockerError(res, tooLarge ? 413 : 400, `calico proxy: reading ${ctx.method} ${ctx.path} body: ${(e as Error).message}`);
    if (tooLarge) res.on('finish', () => discardRest(req));
    return tooLarge ? 413 : 400;
  }

  let decision: RequestDecision;
  try {
    decision = await icp.onRequest(ctx, body);
  } catch (e) {
    ctx.log.error({ err: e, path: ctx.path }, `${icp.name} failed on the request`);
    sendDockerError(res, 500, `calico: ${icp.name}: ${(e as Error).message}`);
    return 500;
  }
  if (decision.action === 'reply') {
    sendDockerError(res, decision.status, decision.message);
    return decision.status;
  }
  const sent = decision.action === 'forward' ? decision.body : body;
  const state = decision.action === 'forward' ? decision.state : undefined;
  // undici computes Content-Length from the buffer; the client's length or
  // chunked framing described the bytes it sent, not necessarily these.
  const headers = endToEndHeaders(req.rawHeaders, ['content-length']);

  let upstream: CollectedResponse | undefined;
  let outcome: UpstreamOutcome;
  try {
    upstream = await collect(up, ctx.method, req.url ?? ctx.path, headers, sent);
    outcome = { status: upstream.status, headers: headerObject(upstream.rawHeaders), body: upstream.body };
  } catch (e) {
    outcome = { error: e as Error };
  }

  let replacement: InterceptorResponse | void = undefined;
  if (icp.onResponse) {
    try {
      replacement = await icp.onResponse(ctx, outcome, state);
    } catch (e) {
      ctx.log.error({ err: e, path: ctx.path }, `${icp.name} failed on the response; passing Docker's answer through`);
    }
  }

  if (replacement) return reply(res, replacement, upstream);
  if (!upstream) {
    const err = (outcome as { error: Error }).error;
    if ((err as { code?: string }).code === 'UND_ERR_INVALID_ARG') {
      // undici refused the client's request as written (a control character in a header): bad input, not an unreachable Docker.
      sendDockerError(res, 400, `calico proxy: cannot forward request: ${err.message}`);
      return 400;
    }
    sendDockerError(res, 502, `calico proxy: cannot reach Docker at ${up.label}: ${err.message}`);
    return 502;
  }
  return reply(res, { status: upstream.status, body: upstream.body }, upstream, upstream.statusText);
}

/** Writes a buffered answer, keeping dockerd's own headers (Api-Version, Server...) where there was one. */
function reply(res: ServerResponse, r: InterceptorResponse, upstream?: CollectedResponse, statusText?: string): number {
  const override = Object.keys(r.headers ?? {}).map((k) => k.toLowerCase());
  const base = upstream ? endToEndHeaders(upstream.rawHeaders, ['content-length', ...override]) : [];
  const headers = [...base];
  for (const [k, v] of Object.entries(r.headers ?? {})) headers.push(k, v);
  const hasType = headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'content-type');
  if (!hasType && r.body.length) headers.push('Content-Type', 'application/json');
  if (r.status !== 204 && r.status !== 304) headers.push('Content-Length', String(r.body.length));
  res.writeHead(r.status, statusText, headers);
  res.end(r.status === 204 || r.status === 304 ? undefined : r.body);
  return r.status;
}
