import type net from 'node:net';
import type { Logger } from 'pino';
import { type BodyScanner, type Framing, type Head, closes, header, parseAnswerHead } from './framing';
import type { Interceptor } from './interceptor';
import type { SpliceRead } from './upstream';
import { AnswerReader } from './answer';
import type { Interception } from './intercept';
import { firstWrite } from './hijack';
import type { HeadDecision as Reading } from './request-head';

/** A request head as dockerd reads it: its framing, route, hijack and Upgrade (request-head.ts). */
export type RequestReading = Extract<Reading, { action: 'forward' }>;

/** What becomes of a request, decided on its head alone (the proxy's one decision step). */
export type HeadDecision =
  /** To dockerd as the client wrote it. */
  | { action: 'forward'; request: RequestReading }
  /** Answered here in Docker's error shape; the connection closes. */
  | { action: 'refuse'; status: number; message: string }
  /** Head and body to the interceptor, dockerd's answer to its onResponse. */
  | { action: 'intercept'; request: RequestReading; interceptor: Interceptor };

/** What a connection needs from the proxy. */
export interface ConnectionHooks {
  /** A fresh raw socket to dockerd, reading through `onread`. */
  docker(onread: SpliceRead): net.Socket;
  dockerLabel: string;
  /** The decision on the request head in the first `size` bytes of `buf`. */
  onHead(buf: Buffer, size: number): HeadDecision;
  done(call: CallRecord): void;
  /** Calls in flight to dockerd: +1 / -1 (a hijacked one counts until it is raw). */
  inflight(delta: number): void;
  /** A call became a raw stream (+1) / that stream ended (-1). */
  hijacked?(delta: 1 | -1): void;
  log: Logger;
}

/** One finished call, for metrics and the debug log. status 0: no answer. */
export interface CallRecord {
  method: string;
  url: string;
  status: number;
  kind: 'splice' | 'hijack' | 'intercepted';
  interceptor?: string;
  started: bigint;
}

/** One request on a connection, from its head to the end of its answer. */
export interface Call extends CallRecord {
  /** The connection ends with this answer (Connection: close either side, HTTP/1.0). */
  close: boolean;
  upgrade: boolean;
  oldHijack: boolean;
  framing: Framing;
  /** The request body as it passes (none while an Upgrade's first write is gathered). */
  body?: BodyScanner;
  /** Bytes of an Upgrade's first write (head and declared body). */
  want: number;
  /** An Upgrade's first write is still being gathered. */
  gathering: boolean;
  /** Client bytes that came with an Upgrade's first write: dropped after a 101, as dockerd drops them (hijack.ts). */
  discard: number;
  headSize: number;
  timer?: NodeJS.Timeout;
  answer?: AnswerReader;
  icp?: Interception;
  inflight: boolean;
  recorded: boolean;
}

export function newCall(r: RequestReading, interceptor?: string): Call {
  const { head: h, framing } = r;
  const [method, url] = h.line;
  const upgrade = !interceptor && r.upgrade;
  return {
    method,
    url,
    status: 0,
    kind: interceptor ? 'intercepted' : 'splice',
    interceptor,
    started: process.hrtime.bigint(),
    close: wantsClose(h),
    upgrade,
    oldHijack: !upgrade && r.hijack,
    framing,
    want: upgrade ? firstWrite(h) : 0,
    gathering: upgrade,
    discard: 0,
    headSize: h.size,
    inflight: true,
    recorded: false,
  };
}

/** Whether a request ends its connection. */
export function wantsClose(h: Head): boolean {
  return closes(h.line[2], header(h.rawHeaders, 'connection'));
}

/** The call no longer waits on dockerd (answered, or a raw stream now). */
export function uncount(call: Call, hooks: ConnectionHooks): void {
  if (!call.inflight) return;
  call.inflight = false;
  hooks.inflight(-1);
}

/** The call is over: counted out and reported, once. */
export function record(call: Call, hooks: ConnectionHooks): void {
  uncount(call, hooks);
  if (call.recorded) return;
  call.recorded = true;
  hooks.done({ method: call.method, url: call.url, status: call.status, kind: call.kind, interceptor: call.interceptor, started: call.started });
}

/** Where a call's answer goes (the Connection). */
export interface AnswerRoute {
  toClient(b: Buffer): void;
  /** The connection is a raw stream from here; `rest`: dockerd's bytes after the answer head. */
  raw(rest: Buffer): void;
  close(): void;
  /** The answer is all out. */
  finish(): void;
}

/**
 * dockerd's answer to `call`: streamed to the client, or gathered for the
 * interceptor. Raw only where Docker hijacks: a 101 to an Upgrade it was
 * asked for, or an old client's attach answered without framing; a 101
 * nobody asked for ends the connection (it cannot be framed further).
 */
export function readAnswer(call: Call, route: AnswerRoute): void {
  call.answer = new AnswerReader(call.method, {
    interim: (b) => route.toClient(b),
    head: (h, bytes, rest) => {
      call.status = h.status;
      if (h.close) call.close = true;
      const raw = call.status === 101 ? call.upgrade : call.oldHijack && call.answer!.untilClose;
      if (call.status === 101 && !raw) {
        route.close();
        return 'raw';
      }
      if (!raw) {
        if (!call.icp) return 'stream';
        call.icp.answered(parseAnswerHead(bytes, bytes.length)!, bytes);
        return 'taken';
      }
      route.toClient(bytes);
      route.raw(rest);
      return 'raw';
    },
    body: (part) => (call.icp ? call.icp.gather(part) : route.toClient(part)),
    done: () => (call.icp ? void call.icp.complete() : route.finish()),
    broken: () => route.close(),
  });
}
