import crypto from 'node:crypto';
import type net from 'node:net';
import type { Logger } from 'pino';
import type { Component } from '../lifecycle/component';
import type { ProxyMetrics } from '../metrics/node-metrics';
import type { Address } from '../listen/address';
import { formatAddress, isLoopbackHost, parseAddress, pointsAt } from '../listen/address';
import { checkListenPolicy, createListener, listen, ListenError, type TlsOptions } from '../listen/listener';
import type { CallRecord, HeadDecision } from './call';
import { Connection } from './connection';
import { ReadRing, readIntoRing } from './client-reads';
import { header } from './framing';
import { decideRequest, type HeadPolicy } from './request-head';
import type { Interceptor } from './interceptor';
import { SPLICE_CHUNK, Upstream, type SpliceRead } from './upstream';
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

const PROBE_HEADER = 'X-Calico-Proxy-Probe';

/**
 * The Docker API proxy: the node component that owns the listener. Every
 * client connection is spliced to its own connection to dockerd
 * (connection.ts): bytes are copied, heads parsed once to find request
 * boundaries and to decide (`decide`) whether a request goes on, is refused,
 * or is an interceptor's. Knows nothing about Calico.
 */
export class DockerProxy implements Component {
  readonly name = 'proxy';
  private listener?: net.Server;
  private readonly clients = new Set<net.Socket>();
  private inflight = 0;
  private readonly upstream: Upstream;
  private readonly listenAddr: Address;
  private bound?: Address;
  private readonly probeNonce = crypto.randomBytes(16).toString('hex');
  private loopDetected = false;
  private readonly interceptors: Interceptor[];
  private readonly policy: HeadPolicy;

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
    // Closed to web pages; Host checked on a loopback TCP listener only (request-head.ts, web-guard.ts).
    this.policy = {
      checkHost: this.listenAddr.kind === 'tcp' && isLoopbackHost(this.listenAddr.host),
      allowOrigins: opts.allowOrigins ?? [],
      probe: { header: PROBE_HEADER, nonce: this.probeNonce },
    };
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

  /** Calls in flight to dockerd (hijacked streams not included). */
  get upstreamRunning(): number {
    return this.inflight;
  }

  async start(): Promise<void> {
    const { server, event } = createListener(this.opts.tls, SPLICE_CHUNK);
    this.listener = server;
    const up = this.upstream;
    const m = this.opts.metrics;
    const hooks = {
      docker: (onread: SpliceRead) => {
        const s = up.connect(onread);
        m?.dockerSocket(s);
        return s;
      },
      dockerLabel: up.label,
      onHead: (buf: Buffer, size: number) => this.decide(buf, size),
      done: (call: CallRecord) => this.done(call),
      inflight: (d: number) => {
        this.inflight += d;
      },
      hijacked: m ? (d: 1 | -1) => m.hijacked(d) : undefined,
      log: this.log,
    };
    server.on(event, (accepted: net.Socket) => {
      let conn: Connection | undefined;
      const ring = new ReadRing();
      const plain = readIntoRing(accepted, server, ring, (view) => conn!.read(view));
      const sock = plain ?? accepted;
      this.clients.add(sock);
      sock.once('close', () => this.clients.delete(sock));
      conn = new Connection(sock, hooks, plain && ring);
    });
    server.on('tlsClientError', (err: Error) => this.log.debug({ err: err.message }, 'TLS handshake with a client failed'));
    const permsFrom = this.opts.socketPermsFrom ?? (up.address.kind === 'unix' ? up.address.path : '/var/run/docker.sock');
    this.bound = await listen(server, this.listenAddr, permsFrom, this.log);
    await this.probeForLoop();
    this.log.info(
      { listen: formatAddress(this.bound), upstream: up.label, tls: this.opts.tls ? (this.opts.tls.verify ? 'verify' : 'on') : 'off' },
      `Docker API proxy listening on ${formatAddress(this.bound)}, forwarding to Docker at ${up.label}`,
    );
  }

  /**
   * The one decision on a request, made on its head (`size` bytes of `buf`)
   * before any byte of it reaches dockerd: read as dockerd will read it, or
   * refused (request-head.ts: framing, target, web pages); then refused (a
   * loop), an interceptor's (matched on the path dockerd's router matches),
   * or forwarded as it is.
   */
  private decide(buf: Buffer, size: number): HeadDecision {
    const d = decideRequest(buf, size, this.policy);
    if (d.action === 'refuse') return d;
    if (header(d.head.rawHeaders, PROBE_HEADER) === this.probeNonce) {
      this.loopDetected = true;
      return { action: 'refuse', status: 508, message: 'calico proxy: request loop (the upstream is this proxy)' };
    }
    const icp = this.interceptors.find((i) => i.matches(d.head.line[0], d.target.path));
    return icp ? { action: 'intercept', request: d, interceptor: icp } : { action: 'forward', request: d };
  }

  private done(call: CallRecord): void {
    const m = this.opts.metrics;
    if (m) {
      if (call.interceptor) m.intercepted(call.interceptor, Number(process.hrtime.bigint() - call.started) / 1e9);
      m.request(call.url, call.status);
    }
    // One line per request at debug; never headers or bodies (X-Registry-Auth, create Env).
    if (!this.log.isLevelEnabled('debug')) return;
    const ms = Math.round(Number(process.hrtime.bigint() - call.started) / 1e5) / 10;
    const { method, url, status, interceptor, kind } = call;
    this.log.debug({ method, url, status, ms, interceptor, kind }, `${method} ${url} ${status}`);
  }

  /**
   * Another name for this host (its LAN address, a DNS alias) can make the
   * upstream lead back here; only the network can tell. One marked /_ping
   * settles it. dockerd being down is not an error: it may start later.
   */
  private async probeForLoop(): Promise<void> {
    try {
      await this.upstream.ping(PROBE_HEADER, this.probeNonce, 5000);
    } catch (e) {
      this.log.warn({ upstream: this.upstream.label }, `Docker at ${this.upstream.label} does not answer yet: ${(e as Error).message}`);
    }
    if (this.loopDetected) {
      await this.stop();
      throw new ListenError(`--docker-upstream ${this.upstream.label} leads back to this proxy (${formatAddress(this.listenAddr)}); point it at dockerd`);
    }
  }

  health(): string | undefined {
    return this.listener?.listening ? undefined : 'not listening';
  }

  async stop(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    if (!listener) return;
    const closed = new Promise<void>((r) => listener.close(() => r()));
    for (const s of this.clients) s.destroy();
    this.clients.clear();
    await closed;
  }
}
