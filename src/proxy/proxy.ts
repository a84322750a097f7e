import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Component } from '../node/component';
import type { ProxyMetrics } from '../metrics/node-metrics';
import type { Address } from './address';
import { formatAddress, isLoopbackHost, parseAddress, pointsAt } from './address';
import type { Interceptor } from './interceptor';
import { findInterceptor } from './interceptor';
import { parseRequestTarget } from './request-target';
import { Upstream, type SpliceRead } from './upstream';
import { passThrough, sendDockerError } from './pass-through';
import type { FastifyInstance } from 'fastify';
import { buildFastifyProxy, callState } from './fastify-app';
import { intercepted } from './intercepted';
import { checkListenPolicy, createListener, createServer, listen, ListenError, TlsOptions } from './listener';
import { splice } from './splice';
import { headerObject } from './headers';
import { swarmPortInterceptor } from './interceptors/swarm-init';

export interface ProxyOptions {
  /** Where clients connect: tcp://127.0.0.1:2377 (default), unix:///path. */
  listen: string;
  /** Where dockerd is: unix:///var/run/docker.sock (default), tcp://host:port. Never DOCKER_HOST. */
  upstream: string;
  tls?: TlsOptions;
  /** First match claims the request; everything else passes through untouched. (The proxy adds its own swarm-port one first.) */
  interceptors?: Interceptor[];
  /** The socket whose mode and group a unix listener copies (default: the upstream socket, else /var/run/docker.sock). */
  socketPermsFrom?: string;
  /** Requests by path class and status, intercepted-call latency, bytes spliced, hijacked streams (the node's metrics). */
  metrics?: ProxyMetrics;
  /** Origins whose requests are taken (`--allow-origin`); requests from any other web page are refused (web-guard.ts). */
  allowOrigins?: string[];
}

const PROBE_HEADER = 'x-calico-proxy-probe';

/**
 * The Docker API proxy: the node component that owns the listener. Every
 * client connection is spliced to its own connection to dockerd (splice.ts):
 * bytes are copied, heads only parsed to find request boundaries; hijacked
 * calls become a raw splice both ways. Requests an interceptor claims (and
 * the loop probe) go instead to the fastify app (fastify-app.ts) on a private
 * unix socket, where they are buffered, offered to the interceptor and
 * forwarded. Knows nothing about Calico.
 */
export class DockerProxy implements Component {
  readonly name = 'proxy';
  /** The public listener: raw connections, spliced (splice.ts). */
  private listener?: net.Server;
  private readonly clients = new Set<net.Socket>();
  /** The fastify app's own server, on a private unix socket: intercepted calls and the loop probe. */
  private server?: http.Server;
  private privateDir?: string;
  private spliceInflight = 0;
  private app?: FastifyInstance;
  private readonly upstream: Upstream;
  private readonly listenAddr: Address;
  private bound?: Address;
  private readonly probeNonce = crypto.randomBytes(16).toString('hex');
  private loopDetected = false;
  private readonly interceptors: Interceptor[];

  constructor(private readonly opts: ProxyOptions, private readonly log: Logger) {
    this.listenAddr = parseAddress(opts.listen, '--listen', 2377);
    const up = parseAddress(opts.upstream, '--docker-upstream', 2375);
    if (pointsAt(up, this.listenAddr)) {
      throw new ListenError(
        `--docker-upstream ${formatAddress(up)} is this proxy's own listener (${formatAddress(this.listenAddr)}); ` +
          'point it at dockerd, e.g. unix:///var/run/docker.sock',
      );
    }
    checkListenPolicy(this.listenAddr, opts.tls);
    this.upstream = new Upstream(up);
    // The proxy's own interceptor (its port is swarm's default port too), then the caller's.
    this.interceptors = [swarmPortInterceptor(() => this.ownTcpListener()), ...(opts.interceptors ?? [])];
  }

  /** The address actually bound (port resolved when 0 was asked for). */
  get address(): Address {
    if (!this.bound) throw new Error('proxy is not listening');
    return this.bound;
  }

  private ownTcpListener(): { host: string; port: number; label: string } | undefined {
    const b = this.bound;
    return b?.kind === 'tcp' ? { host: b.host, port: b.port, label: formatAddress(b) } : undefined;
  }

  get upstreamLabel(): string {
    return this.upstream.label;
  }

  /** Calls in flight to dockerd on the pooled connections (hijacked ones not included). */
  get upstreamRunning(): number {
    return this.upstream.pool.stats.running + this.spliceInflight;
  }

  /** Settings that decide whether long streams survive (tests assert they are unbounded). */
  get streamSettings(): { bodyTimeout?: number; headersTimeout?: number; connections?: number | null; requestTimeout?: number; serverTimeout?: number } {
    const p = this.upstream.poolOptions;
    return {
      bodyTimeout: p.bodyTimeout,
      headersTimeout: p.headersTimeout,
      connections: p.connections,
      requestTimeout: this.server?.requestTimeout,
      serverTimeout: this.server?.timeout,
    };
  }

  async start(): Promise<void> {
    // Intercepted calls: fastify (fastify-app.ts) on its own server, reached
    // over a unix socket in a directory only we can enter.
    this.privateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-proxy-'));
    fs.chmodSync(this.privateDir, 0o700);
    const appSocket = path.join(this.privateDir, 'fastify.sock');
    const server = createServer();
    this.server = server;
    this.app = await buildFastifyProxy(server, {
      upstream: this.upstream,
      claim: (req, res) => this.claim(req, res),
      fallback: (req, res) => this.fallback(req, res),
      clientError: (err, socket) => this.onClientError(err, socket),
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(appSocket, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Everything else: spliced to dockerd as raw bytes.
    const { server: listener, event } = createListener(this.opts.tls);
    this.listener = listener;
    const up = this.upstream;
    const m = this.opts.metrics;
    const targets = {
      docker: m
        ? (onread?: SpliceRead) => {
            const s = up.connectRaw(onread);
            m.dockerSocket(s);
            return s;
          }
        : (onread?: SpliceRead) => up.connectRaw(onread),
      fastify: () => net.connect({ path: appSocket, allowHalfOpen: true }),
      dockerLabel: up.label,
      claims: (method: string, url: string, rawHeaders: string[]) => this.claims(method, url, rawHeaders),
      done: (method: string, url: string, status: number, kind: 'splice' | 'hijack', started: bigint) => {
        m?.request(url, status);
        this.logRequest(method, url, status, started, undefined, kind);
      },
      hijacked: m ? (d: 1 | -1) => m.hijacked(d) : undefined,
      inflight: (d: number) => {
        this.spliceInflight += d;
      },
      // Closed to web pages; Host checked on a loopback TCP listener only (request-head.ts, web-guard.ts).
      policy: {
        checkHost: this.listenAddr.kind === 'tcp' && isLoopbackHost(this.listenAddr.host),
        allowOrigins: this.opts.allowOrigins ?? [],
        probe: { header: PROBE_HEADER, nonce: this.probeNonce },
      },
      log: this.log,
    };
    listener.on(event, (sock: net.Socket) => {
      this.clients.add(sock);
      sock.once('close', () => this.clients.delete(sock));
      splice(sock, targets);
    });
    listener.on('tlsClientError', (err: Error) => this.log.debug({ err: err.message }, 'TLS handshake with a client failed'));
    const permsFrom = this.opts.socketPermsFrom ?? (this.upstream.address.kind === 'unix' ? this.upstream.address.path : '/var/run/docker.sock');
    this.bound = await listen(listener, this.listenAddr, permsFrom, this.log);
    await this.probeForLoop();
    this.log.info(
      { listen: formatAddress(this.bound), upstream: this.upstream.label, tls: this.opts.tls ? (this.opts.tls.verify ? 'verify' : 'on') : 'off' },
      `Docker API proxy listening on ${formatAddress(this.bound)}, forwarding to Docker at ${this.upstream.label}`,
    );
  }

  /** Whether a request must go to fastify (the loop probe, an interceptor's match) rather than be spliced. */
  private claims(method: string, url: string, rawHeaders: string[]): boolean {
    if (headerObject(rawHeaders)[PROBE_HEADER] !== undefined) return true;
    return findInterceptor(this.interceptors, method, parseRequestTarget(url).path) !== undefined;
  }

  /**
   * Another name for this host (its LAN address, a DNS alias) can make the
   * upstream lead back here; only the network can tell. One marked /_ping
   * settles it. dockerd being down is not an error: it may start later.
   */
  private async probeForLoop(): Promise<void> {
    try {
      const r = await this.upstream.pool.request({
        method: 'GET',
        path: '/_ping',
        headers: { [PROBE_HEADER]: this.probeNonce },
        headersTimeout: 5000,
        bodyTimeout: 5000,
      });
      await r.body.dump();
    } catch (e) {
      this.log.warn({ upstream: this.upstream.label }, `Docker at ${this.upstream.label} does not answer yet: ${(e as Error).message}`);
    }
    if (this.loopDetected) {
      await this.stop();
      throw new ListenError(
        `--docker-upstream ${this.upstream.label} leads back to this proxy (${formatAddress(this.listenAddr)}); point it at dockerd`,
      );
    }
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    this.log.debug({ err: err.message, code: err.code }, 'malformed request from client');
    if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
      const body = JSON.stringify({ message: `calico proxy: malformed HTTP request: ${err.code ?? err.message}` });
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    } else socket.destroy();
  }

  /**
   * fastify's onRequest: the loop probe and intercepted calls are taken here
   * (true); anything else goes on to @fastify/http-proxy's route.
   */
  private claim(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const started = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    if (req.headers[PROBE_HEADER] === this.probeNonce) {
      this.loopDetected = true;
      sendDockerError(res, 508, 'calico proxy: request loop (the upstream is this proxy)');
      return true;
    }
    const target = parseRequestTarget(req.url ?? '/');
    const icp = findInterceptor(this.interceptors, method, target.path);
    if (!icp) {
      if (this.log.isLevelEnabled('debug')) {
        const call = callState(req, res);
        res.once('close', () => this.logRequest(method, req.url, call.status || (res.writableFinished ? res.statusCode : 499), started));
      }
      return false;
    }
    this.track(intercepted(this.upstream, icp, target, req, res, this.log), req, res, method, started, icp.name);
    return true;
  }

  /** Requests fastify does not proxy itself (see fastify-app.ts): the node:http pass-through. */
  private fallback(req: http.IncomingMessage, res: http.ServerResponse): void {
    const call = callState(req, res);
    passThrough(this.upstream, req, res).then((status) => {
      call.status = status;
    }, (err) => {
      this.log.error({ err, method: req.method, url: req.url }, 'proxy request failed');
      sendDockerError(res, 500, `calico proxy: ${(err as Error).message}`);
    });
  }

  private track(handled: Promise<number>, req: http.IncomingMessage, res: http.ServerResponse, method: string, started: bigint, interceptor: string): void {
    const m = this.opts.metrics;
    handled.then(
      (status) => {
        if (m) {
          m.intercepted(interceptor, Number(process.hrtime.bigint() - started) / 1e9);
          m.request(req.url ?? '/', status);
        }
        this.logRequest(method, req.url, status, started, interceptor);
      },
      (err) => {
        this.log.error({ err, method, url: req.url }, 'proxy request failed');
        sendDockerError(res, 500, `calico proxy: ${(err as Error).message}`);
      },
    );
  }

  // One line per request at debug; never headers or bodies (X-Registry-Auth, create Env).
  private logRequest(method: string, url: string | undefined, status: number, started: bigint, interceptor?: string, kind?: string): void {
    if (!this.log.isLevelEnabled('debug')) return;
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    this.log.debug({ method, url, status, ms: Math.round(ms * 10) / 10, interceptor, kind }, `${method} ${url} ${status}`);
  }

  health(): string | undefined {
    return this.listener?.listening ? undefined : 'not listening';
  }

  async stop(): Promise<void> {
    const listener = this.listener;
    const server = this.server;
    const app = this.app;
    this.listener = undefined;
    this.server = undefined;
    this.app = undefined;
    if (listener) {
      const closed = new Promise<void>((r) => listener.close(() => r()));
      for (const s of this.clients) s.destroy();
      this.clients.clear();
      await closed;
    }
    if (server) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    }
    // Not listening through fastify: this only runs its onClose hooks.
    await app?.close().catch(() => undefined);
    await this.upstream.close();
    if (this.privateDir) fs.rmSync(this.privateDir, { recursive: true, force: true });
    this.privateDir = undefined;
  }
}
