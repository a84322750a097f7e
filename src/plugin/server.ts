import Fastify, { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { PluginError } from './address';
import type { PluginMetrics } from '../metrics/node-metrics';
import type { IpamDriver } from './ipam-driver';
import type { NetworkDriver } from './network-driver';
import * as S from './schemas';

export interface PluginServerOptions {
  network: NetworkDriver;
  ipam: IpamDriver;
  log: Logger;
  /** Calls by method and result (the node's metrics). */
  metrics?: PluginMetrics;
}

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1+json';

/**
 * The libnetwork remote API: one POST route per method, bodies checked by a
 * schema, every failure answered as {"Err": "..."} which Docker shows its
 * client. Knows nothing about veths or etcd.
 */
export function buildPluginServer(o: PluginServerOptions): FastifyInstance {
  // Closing drops dockerd's keep-alive connections at once: a node stop must not wait on them.
  const app = Fastify({ logger: false, forceCloseConnections: true });
  // Docker posts JSON as application/vnd.docker.plugins.v1.x+json, sometimes with an empty body.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = (body as string).trim();
    if (!text) return done(null, {});
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(new PluginError(`request body is not JSON: ${(e as Error).message}`), undefined);
    }
  });

  const route = <T extends z.ZodTypeAny>(method: string, schema: T, handler: (body: z.infer<T>) => unknown) => {
    app.post(`/${method}`, async (req, reply) => {
      const started = process.hrtime.bigint();
      reply.type(CONTENT_TYPE);
      const parsed = schema.safeParse(req.body ?? {});
      if (!parsed.success) {
        o.log.warn({ method, problem: S.describeZodError(parsed.error) }, 'invalid plugin request');
        o.metrics?.call(method, 'invalid');
        return reply.code(400).send({ Err: `invalid ${method} request: ${S.describeZodError(parsed.error)}` });
      }
      try {
        const out = await handler(parsed.data);
        o.log.debug({ method, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'plugin call');
        o.metrics?.call(method, 'ok');
        return out;
      } catch (e) {
        const msg = (e as Error).message;
        o.log.warn({ method, err: msg }, 'plugin call failed');
        o.metrics?.call(method, e instanceof PluginError ? 'invalid' : 'error');
        return reply.code(e instanceof PluginError ? 400 : 500).send({ Err: msg });
      }
    });
  };

  route('Plugin.Activate', S.AnyRequest, () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }));

  const n = o.network;
  route('NetworkDriver.GetCapabilities', S.AnyRequest, () => n.getCapabilities());
  route('NetworkDriver.CreateNetwork', S.CreateNetworkRequest, (b) => n.createNetwork(b));
  route('NetworkDriver.DeleteNetwork', S.NetworkRequest, (b) => n.deleteNetwork(b));
  route('NetworkDriver.CreateEndpoint', S.CreateEndpointRequest, (b) => n.createEndpoint(b));
  route('NetworkDriver.EndpointOperInfo', S.EndpointRequest, (b) => n.endpointOperInfo(b));
  route('NetworkDriver.DeleteEndpoint', S.EndpointRequest, (b) => n.deleteEndpoint(b));
  route('NetworkDriver.Join', S.JoinRequest, (b) => n.join(b));
  route('NetworkDriver.Leave', S.EndpointRequest, (b) => n.leave(b));
  route('NetworkDriver.DiscoverNew', S.AnyRequest, () => ({}));
  route('NetworkDriver.DiscoverDelete', S.AnyRequest, () => ({}));
  route('NetworkDriver.ProgramExternalConnectivity', S.EndpointRequest, () => ({}));
  route('NetworkDriver.RevokeExternalConnectivity', S.EndpointRequest, () => ({}));

  const i = o.ipam;
  route('IpamDriver.GetCapabilities', S.AnyRequest, () => i.getCapabilities());
  route('IpamDriver.GetDefaultAddressSpaces', S.AnyRequest, () => i.getDefaultAddressSpaces());
  route('IpamDriver.RequestPool', S.RequestPoolRequest, (b) => i.requestPool(b));
  route('IpamDriver.ReleasePool', S.ReleasePoolRequest, (b) => i.releasePool(b.PoolID));
  route('IpamDriver.RequestAddress', S.RequestAddressRequest, (b) => i.requestAddress(b));
  route('IpamDriver.ReleaseAddress', S.ReleaseAddressRequest, (b) => i.releaseAddress(b));

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).type(CONTENT_TYPE).send({ Err: `the calico plugin does not implement ${req.url.replace(/^\//, '')}` });
  });
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    const status = err.statusCode && err.statusCode < 500 ? err.statusCode : err instanceof PluginError ? 400 : 500;
    reply.code(status).type(CONTENT_TYPE).send({ Err: err.message });
  });
  return app;
}
