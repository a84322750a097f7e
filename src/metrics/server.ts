import fs from 'node:fs';
import Fastify, { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Component } from '../lifecycle/component';
import type { Address } from '../listen/address';
import { formatAddress } from '../listen/address';
import { tlsServerOptions, type TlsOptions } from '../listen/listener';
import type { NodeHealth } from './health';
import { metricsAddress } from './listen';
import type { NodeMetrics } from './node-metrics';

export interface MetricsServerOptions {
  /** `--metrics`: tcp://127.0.0.1:9099, or unix:///path. */
  listen: string;
  /** The node's TLS (the proxy's flags); off loopback only with verify. */
  tls?: TlsOptions;
  metrics: NodeMetrics;
  /** The node's health now (nodeHealth over the running components); must not wait on anything. */
  health: () => NodeHealth;
  log: Logger;
}

/**
 * The node's observability endpoint, a small fastify instance of its own:
 * GET /metrics (Prometheus text of the node's registry) and GET /healthz
 * (200 when every component is up, else 503 naming the ones that are not).
 */
export class MetricsServer implements Component {
  readonly name = 'metrics';
  private readonly addr: Address;
  private app?: FastifyInstance;
  private bound?: Address;

  constructor(private readonly o: MetricsServerOptions) {
    this.addr = metricsAddress(o.listen, o.tls);
  }

  /** The address actually bound (port resolved when 0 was asked for). */
  get address(): Address {
    if (!this.bound) throw new Error('metrics endpoint is not listening');
    return this.bound;
  }

  async start(): Promise<void> {
    const t = this.o.tls;
    const app = Fastify({
      logger: false,
      forceCloseConnections: true,
      ...(t
        ? { https: tlsServerOptions(t) }
        : {}),
    }) as unknown as FastifyInstance;
    app.get('/metrics', async (_req, reply) => {
      const text = await this.o.metrics.text();
      return reply.type(this.o.metrics.contentType).send(text);
    });
    app.get('/healthz', async (_req, reply) => {
      const h = this.o.health();
      return reply.code(h.status === 'ok' ? 200 : 503).send(h);
    });
    this.app = app;
    const a = this.addr;
    if (a.kind === 'unix') fs.rmSync(a.path, { force: true });
    await (a.kind === 'unix' ? app.listen({ path: a.path }) : app.listen({ host: a.host, port: a.port }));
    const info = app.server.address();
    this.bound = a.kind === 'tcp' && info && typeof info === 'object' ? { kind: 'tcp', host: a.host, port: info.port } : a;
    this.o.log.info({ listen: formatAddress(this.bound) }, `metrics on ${formatAddress(this.bound)}/metrics, health on /healthz`);
  }

  health(): string | undefined {
    return this.app?.server.listening ? undefined : 'not listening';
  }

  async stop(): Promise<void> {
    const app = this.app;
    this.app = undefined;
    await app?.close().catch(() => undefined);
    if (this.addr.kind === 'unix' && app) fs.rmSync(this.addr.path, { force: true });
  }
}
