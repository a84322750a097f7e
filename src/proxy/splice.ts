import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { BodyScanner, Framing, Head, MAX_HEAD, headEnd, header, parseHead, responseFraming } from './framing';
import { decideRequest, type HeadDecision, type HeadPolicy } from './request-head';
import { declaredBody, BODY_WAIT_MS } from './hijack';
import { dockerErrorBody } from './interceptor';
import { SPLICE_CHUNK, type SpliceRead } from './upstream';

/** How long a client may go on sending a body that was answered early before its socket goes. */
const LINGER_MS = 10000;

/**
 * The pass-through that only moves bytes. One client connection gets one
 * connection to dockerd (opened at its first request, kept for its life);
 * request heads are parsed only to find where each request ends and to offer
 * it to the interceptors (`claims`); everything else (the head as the client
 * wrote it, bodies, dockerd's answers) is copied as raw bytes. Claimed
 * requests go, as bytes too, to the fastify app (fastify-app.ts) on its
 * private socket, which runs the interceptors.
 *
 * One request at a time per connection (Docker clients never pipeline): the
 * client is not read past a request while its answer is on the way.
 *
 * Hijacked calls (Upgrade, or an answer without framing to an old client's
 * attach/exec start) turn the connection into a raw splice both ways, each
 * direction closed on its own (half-close). The head of an Upgrade request
 * and its declared body go out in one write (see hijack.ts for why).
 *
 * dockerd's side reads into one buffer per connection (net's `onread`), not
 * a new buffer per read: in a process the size of the node, those per-read
 * buffers made V8 run a full mark-compact every ~50 ms of a transfer (the
 * profile of `docker cp` out: a third of the proxy's CPU was the garbage
 * collector). A chunk read there is valid until the next read, so it is
 * written on (or copied, while earlier writes to the client are pending) and
 * dockerd's socket is not read again until the client took it.
 */
export interface SpliceTargets {
  /** A fresh raw socket to dockerd, reading through `onread`. */
  docker(onread: SpliceRead): net.Socket;
  /** A fresh raw socket to the fastify app (intercepted calls, the loop probe). */
  fastify(): net.Socket;
  dockerLabel: string;
  /** Whether fastify must take this request (interceptor match, loop probe). */
  claims(method: string, url: string, rawHeaders: string[]): boolean;
  /** Called per finished request not claimed: method, url, status (0: none), kind. */
  done(method: string, url: string, status: number, kind: 'splice' | 'hijack', started: bigint): void;
  /** Upstream (dockerd) calls in flight: +1 / -1. */
  inflight(delta: number): void;
  /** A call became a raw stream (+1) / that stream ended (-1). */
  hijacked?(delta: 1 | -1): void;
  /** Origin/Sec-Fetch/Host rules of this listener (request-head.ts); none: only the framing rules. */
  policy?: HeadPolicy;
  log: Logger;
}

type Target = 'docker' | 'fastify';

export function splice(client: net.Socket | Duplex, t: SpliceTargets): void {
  const c = client as net.Socket;
  c.allowHalfOpen = true;
  c.setNoDelay?.(true);
  c.setTimeout?.(0);
  let inbuf: Buffer = Buffer.alloc(0);
  let state: 'head' | 'body' | 'answer' | 'raw' | 'gather' | 'closed' = 'head';
  let clientEnded = false;
  const conns: Partial<Record<Target, net.Socket>> = {};
  let cur: { target: Target; sock: net.Socket; method: string; url: string; upgrade: boolean; hijack: boolean; status: number; counted: boolean; started: bigint; close: boolean } | undefined;
  let reqBody: BodyScanner | undefined;
  let resBuf: Buffer = Buffer.alloc(0);
  let resBody: BodyScanner | undefined;
  let resFraming: Framing | undefined;
  // An Upgrade request's declared body being gathered (state 'gather'), then
  // the client's bytes go raw while the answer is awaited.
  let gatherTimer: NodeJS.Timeout | undefined;
  let gatherSend: (() => void) | undefined;
  let gatherWant = 0;
  let pendingRawFromClient = false;
  // Bytes that came with an Upgrade request's head and body (in inbuf when
  // they were sent): dockerd drops what it read with the head when it
  // hijacks, so after a 101 these are dropped too; after any other answer
  // they are the next request, as dockerd reads them (see hijack.ts).
  let upgradeDiscard = 0;
  let rawCounted = false;

  const closeAll = () => {
    if (state === 'closed') return;
    state = 'closed';
    clearTimeout(gatherTimer);
    if (rawCounted) {
      rawCounted = false;
      t.hijacked!(-1);
    }
    finishCall();
    for (const s of Object.values(conns)) s?.destroy();
    c.destroy();
  };

  const finishCall = () => {
    if (!cur) return;
    if (cur.counted) t.inflight(-1);
    if (cur.target === 'docker') t.done(cur.method, cur.url, cur.status, cur.hijack ? 'hijack' : 'splice', cur.started);
    cur.counted = false;
  };

  /**
   * Ends a connection whose last answer is out (Connection: close, an error):
   * our side is half-open by design (hijacks), so once the answer is flushed
   * the socket goes, as node's http server does, instead of waiting for a
   * client that may never close its side.
   */
  const endClient = (data?: string) => {
    c.end(data ?? '', () => c.destroy());
  };

  /**
   * The answer came before the client finished sending its body (a 413, an
   * early refusal): our side ends, the rest of the body is read and dropped
   * so the client can finish writing and read the answer, then the socket
   * goes (at the client's end, or after LINGER_MS).
   */
  const lingerClient = () => {
    c.end();
    const timer = setTimeout(() => c.destroy(), LINGER_MS);
    timer.unref();
    c.once('end', () => c.destroy());
    c.once('close', () => clearTimeout(timer));
    c.resume();
  };

  const answerError = (status: number, message: string) => {
    const body = dockerErrorBody(message);
    const reason = REASONS[status] ?? 'Bad Request';
    const answer = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString()}`;
    // A client still sending (a refused head's body) reads the answer before the socket goes: a close with unread bytes is a reset that can lose it.
    if (clientEnded) endClient(answer);
    else {
      c.write(answer);
      lingerClient();
    }
    if (cur) cur.status = status;
    finishCall();
    cur = undefined;
    state = 'closed';
    for (const s of Object.values(conns)) s?.destroy();
  };

  function connection(target: Target): net.Socket {
    const have = conns[target];
    if (have && !have.destroyed && !have.readableEnded) return have;
    // An upstream that ended its side between calls is half-open on ours: let it go.
    have?.destroy();
    let s: net.Socket;
    if (target === 'docker') {
      const buffer = Buffer.allocUnsafe(SPLICE_CHUNK);
      s = t.docker({
        buffer,
        callback: (n: number) => {
          onDockerRead(s, buffer.subarray(0, n));
          return true; // pausing is onDockerRead's (s.pause())
        },
      });
    } else {
      s = t.fastify();
      s.on('data', (chunk: Buffer) => onAnswer(s, chunk));
    }
    conns[target] = s;
    s.on('end', () => {
      // Ended while no call of ours was on it (an idle keep-alive the server
      // closed, or one that answered Connection: close): close our side too,
      // or both ends stay open for as long as the client's connection lives.
      if (cur?.sock !== s) s.destroy();
      else onAnswerEnd(s);
    });
    let connected = false;
    s.once('connect', () => (connected = true));
    s.on('error', (err) => {
      if (cur?.sock === s && s.bytesRead === 0 && state !== 'raw' && connected) {
        // dockerd took the connection and closed it while the request was
        // still on its way (EPIPE, ECONNRESET): it refused what it read (a
        // malformed or oversized head), and its answer went with the socket.
        answerError(400, `calico proxy: Docker closed the connection before answering this request (${err.message}): it refused the request as sent`);
      } else if (cur?.sock === s && s.bytesRead === 0 && state !== 'raw') {
        answerError(502, `calico proxy: cannot reach Docker at ${t.dockerLabel}: ${err.message}`);
      } else if (cur?.sock === s) {
        t.log.debug({ err: err.message, url: cur.url }, 'spliced call: Docker side failed');
        closeAll();
      }
    });
    s.on('close', () => {
      if (conns[target] === s) delete conns[target];
      if (cur?.sock === s && state !== 'closed') {
        // Closed before its answer was complete (or a raw stream ended by RST).
        if (state === 'raw') {
          if (!c.writableEnded) c.end();
        } else if (state === 'answer' && resFraming?.kind === 'close') {
          c.end();
        } else if (s.bytesRead === 0 && state !== 'answer') {
          return; // error handler answered
        } else closeAll();
      }
    });
    return s;
  }

  /**
   * A read from dockerd, in its socket's one buffer. While earlier writes to
   * the client are pending the chunk would queue behind them still pointing
   * into that buffer: copied then. Otherwise it is written as it is, and if
   * the write did not complete at once the socket is not read again (the
   * next read would overwrite it) until the client took it.
   */
  function onDockerRead(s: net.Socket, view: Buffer): void {
    if (c.writableLength > 0) {
      onAnswer(s, Buffer.from(view));
      return;
    }
    onAnswer(s, view);
    // Not all taken at once: the socket holds (a part of) the view.
    // (One dockerd socket reads at a time; a held one before it is gone.)
    if (c.writableLength > 0 && !s.destroyed && heldSock !== s) {
      heldSock = s;
      s.pause();
    }
  }

  function onAnswer(s: net.Socket, chunk: Buffer): void {
    if (!cur || cur.sock !== s || state === 'closed') return;
    if (state === 'raw') {
      writeClient(s, chunk);
      return;
    }
    if (!resBody) {
      resBuf = resBuf.length ? Buffer.concat([resBuf, chunk]) : chunk;
      const end = headEnd(resBuf);
      if (end < 0) {
        if (resBuf.length > MAX_HEAD) closeAll();
        // Kept for the next read: not in the socket's read buffer.
        else if (resBuf === chunk) resBuf = Buffer.from(chunk);
        return;
      }
      const h = parseHead(resBuf, end, 'response');
      if (!h) {
        closeAll();
        return;
      }
      const status = Number(h.line[1]);
      const head = resBuf.subarray(0, end);
      const rest = resBuf.subarray(end);
      resBuf = Buffer.alloc(0);
      writeClient(s, head);
      if (status >= 100 && status < 200 && status !== 101) {
        // 100 Continue and friends: the final answer follows.
        if (rest.length) onAnswer(s, rest);
        return;
      }
      cur.status = status;
      if (wantsClose(h)) cur.close = true;
      // Raw only where Docker hijacks: a 101 to an Upgrade it was asked for,
      // or an old client's attach answered without framing.
      if ((status === 101 && cur.upgrade) || (status !== 101 && cur.hijack && responseFraming(h, cur.method).kind === 'close')) {
        goRaw(s, rest);
        return;
      }
      if (status === 101) {
        closeAll(); // a switch nobody asked for: the connection cannot be framed further
        return;
      }
      resFraming = responseFraming(h, cur.method);
      resBody = new BodyScanner(resFraming);
      if (rest.length) answerBytes(s, rest);
      else if (resBody.done) answerDone();
      return;
    }
    answerBytes(s, chunk);
  }

  let clientDrainWait = false;
  // The dockerd socket paused until the client's socket took everything
  // written to it (its read buffer is in one of those writes).
  let heldSock: net.Socket | undefined;
  const clientTook = () => {
    if (heldSock && c.writableLength === 0) {
      const s = heldSock;
      heldSock = undefined;
      if (!clientDrainWait) s.resume();
    }
  };
  function writeClient(s: net.Socket, b: Buffer): void {
    if (!b.length) return;
    if (!c.write(b, clientTook) && !clientDrainWait) {
      // A slow client pauses dockerd's socket.
      clientDrainWait = true;
      s.pause();
      c.once('drain', () => {
        clientDrainWait = false;
        if (heldSock !== s) s.resume();
      });
    }
  }

  function answerBytes(s: net.Socket, b: Buffer): void {
    const n = resBody!.feed(b);
    writeClient(s, n === b.length ? b : b.subarray(0, n));
    if (resBody!.done) answerDone();
    // Bytes beyond the answer: dockerd sent more than it framed; nothing a client could use.
  }

  function answerDone(): void {
    finishCall();
    // Answered before the request body was all sent (dockerd refused it
    // early): the rest of the body cannot be framed as a next request.
    const bodyLeft = reqBody !== undefined && !reqBody.done;
    const close = cur?.close || bodyLeft;
    cur = undefined;
    resBody = undefined;
    resFraming = undefined;
    state = 'head';
    if (close) {
      // Connection: close (either side) or HTTP/1.0: the connection ends with this answer.
      state = 'closed';
      if (bodyLeft) lingerClient();
      else endClient();
      for (const s of Object.values(conns)) s?.end();
      return;
    }
    if (clientEnded && !inbuf.length) {
      c.end();
      for (const s of Object.values(conns)) s?.end();
      return;
    }
    c.resume();
    onRequestBytes();
  }

  function onAnswerEnd(s: net.Socket): void {
    if (cur?.sock !== s) return;
    if (state === 'raw') {
      if (!c.writableEnded) c.end();
      return;
    }
    if (state === 'answer' && resFraming?.kind === 'close') {
      finishCall();
      endClient();
      return;
    }
    if (state !== 'closed') closeAll();
  }

  /**
   * Client bytes on to dockerd. The client is not read again until dockerd's
   * socket took them: every read of a client socket is a new buffer, and
   * letting them queue is what kept them alive long enough for V8 to promote
   * them and then run a full mark-compact every few dozen MiB of an upload
   * (`docker cp` in, build contexts, load). See also SPLICE_CHUNK.
   */
  let clientHeldBy: net.Socket | undefined;
  function writeDocker(sock: net.Socket, b: Buffer): void {
    sock.write(b, () => {
      if (clientHeldBy !== sock || sock.writableLength > 0) return;
      clientHeldBy = undefined;
      // Only where the client is read on; elsewhere the request/answer steps resume it.
      if (state === 'body' || state === 'raw' || pendingRawFromClient) c.resume();
    });
    if (sock.writableLength > 0 && !clientHeldBy) {
      clientHeldBy = sock;
      c.pause();
    }
  }

  function goRaw(s: net.Socket, rest: Buffer): void {
    state = 'raw';
    if (t.hijacked) {
      rawCounted = true;
      t.hijacked(1);
    }
    if (cur?.counted) {
      t.inflight(-1);
      cur.counted = false;
    }
    writeClient(s, rest);
    // Whatever the client sent after the request (stdin) goes on raw.
    const early = cur?.upgrade ? inbuf.subarray(Math.min(upgradeDiscard, inbuf.length)) : inbuf;
    upgradeDiscard = 0;
    if (early.length) s.write(early);
    inbuf = Buffer.alloc(0);
    if (clientEnded) s.end();
    c.resume();
  }

  function onRequestBytes(): void {
    while (state === 'head' && inbuf.length) {
      const end = headEnd(inbuf);
      if (end < 0) {
        if (inbuf.length > MAX_HEAD) answerError(431, 'calico proxy: request head too large');
        return;
      }
      const d = decideRequest(inbuf, end, t.policy);
      if (d.action === 'refuse') {
        answerError(d.status, d.message);
        return;
      }
      startRequest(d);
    }
    if (state === 'body') feedBody();
  }

  function startRequest(d: Extract<HeadDecision, { action: 'forward' }>): void {
    const { head: h, framing, upgrade } = d;
    const [method, url] = h.line;
    const target: Target = t.claims(method, url, h.rawHeaders) ? 'fastify' : 'docker';
    const oldHijack = !upgrade && d.hijack;
    let sock: net.Socket;
    try {
      sock = connection(target);
    } catch (e) {
      answerError(502, `calico proxy: cannot reach Docker at ${t.dockerLabel}: ${(e as Error).message}`);
      return;
    }
    cur = { target, sock, method, url, upgrade, hijack: upgrade || oldHijack, status: 0, counted: target === 'docker', started: process.hrtime.bigint(), close: wantsClose(h) };
    if (cur.counted) t.inflight(1);
    resBuf = Buffer.alloc(0);
    resBody = undefined;
    reqBody = undefined;
    upgradeDiscard = 0;
    if (upgrade && target === 'docker') {
      // Head and declared body: one write. The connection stays framed: only
      // dockerd's 101 makes it raw (onAnswer); what the client sends meanwhile
      // waits, and is the next request if dockerd answers anything else.
      const want = h.size + declaredBody(lowerHeaders(h.rawHeaders));
      const send = () => {
        clearTimeout(gatherTimer);
        if (state !== 'gather') return;
        state = 'head';
        forwardRequest(h, framing, sock);
        upgradeDiscard = inbuf.length;
      };
      state = 'gather';
      if (inbuf.length >= want || clientEnded) send();
      else {
        gatherSend = send;
        gatherWant = want;
        gatherTimer = setTimeout(send, BODY_WAIT_MS);
      }
      return;
    }
    forwardRequest(h, framing, sock);
  }

  /** The head and the body bytes already read, in one write; the rest of the body as it comes (feedBody). */
  function forwardRequest(h: Head, framing: Framing, sock: net.Socket): void {
    reqBody = new BodyScanner(framing, true);
    const head = inbuf.subarray(0, h.size);
    inbuf = inbuf.subarray(h.size);
    const n = reqBody.feed(inbuf);
    sock.write(n ? Buffer.concat([head, inbuf.subarray(0, n)]) : head);
    inbuf = inbuf.subarray(n);
    if (reqBody.broken) return refuseBody();
    state = reqBody.done ? 'answer' : 'body';
    if (state === 'answer') c.pause();
  }

  /** A chunked body Go could read another way: what came before the bad byte went on; nothing after it does. */
  function refuseBody(): void {
    if (cur && cur.status === 0 && !resBody && !resBuf.length) answerError(400, 'calico proxy: malformed chunked request body (chunk extensions, trailers and bare LF are refused)');
    else closeAll();
  }

  function feedBody(): void {
    if (!cur || !reqBody || !inbuf.length) return;
    const n = reqBody.feed(inbuf);
    if (n) {
      writeDocker(cur.sock, n === inbuf.length ? inbuf : inbuf.subarray(0, n));
    }
    inbuf = inbuf.subarray(n);
    if (reqBody.broken) return refuseBody();
    if (reqBody.done) {
      state = 'answer';
      c.pause();
    }
  }

  function onClientData(b: Buffer): void {
    if (state === 'closed') return;
    if (state === 'raw') {
      writeDocker(cur!.sock, b);
      return;
    }
    inbuf = inbuf.length ? Buffer.concat([inbuf, b]) : b;
    if (state === 'gather') {
      if (inbuf.length >= gatherWant) gatherSend?.();
      return;
    }
    if (state === 'answer') {
      // Not read past the request until its answer is done (no pipelining).
      c.pause();
      return;
    }
    onRequestBytes();
  }

  c.on('data', onClientData);
  c.on('end', () => {
    clientEnded = true;
    if (state === 'gather') gatherSend?.();
    if (state === 'raw' || pendingRawFromClient) {
      cur?.sock.end();
      return;
    }
    // An Upgrade awaiting dockerd's answer: the EOF goes on once the stream is raw (goRaw), or ends the connection after a refusal (answerDone).
    if (cur?.upgrade && state === 'answer') return;
    if (state === 'head' && !cur) {
      c.end();
      for (const s of Object.values(conns)) s?.end();
      return;
    }
    // A client that half-closes an ordinary call has left (no Docker client
    // does it otherwise; node's server aborted such calls too): let go of
    // dockerd's side (\`docker events\` ^C).
    closeAll();
  });
  c.on('error', (err) => {
    t.log.debug({ err: err.message }, 'spliced connection: client side failed');
    closeAll();
  });
  c.on('close', () => closeAll());
}

const REASONS: Record<number, string> = {
  403: 'Forbidden',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
};

function wantsClose(h: Head): boolean {
  const conn = (header(h.rawHeaders, 'connection') ?? '').toLowerCase();
  if (/\bclose\b/.test(conn)) return true;
  return h.line[0] === 'HTTP/1.0' || h.line[2] === 'HTTP/1.0' ? !/\bkeep-alive\b/.test(conn) : false;
}

function lowerHeaders(raw: readonly string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) o[raw[i].toLowerCase()] ??= raw[i + 1];
  return o;
}
