// The node context: what every component of one node process shares, made
// once at start after the datastore is up, and passed to each component.
import type Dockerode from 'dockerode';
import type { Logger } from 'pino';
import { Datastore, EndpointStore } from '../datastore';
import { InflightHandles } from '../endpoints/inflight';
import { EndpointLifecycle } from '../endpoints/lifecycle';
import { EndpointRecorder } from '../endpoints/recorder';
import { EndpointRegistry } from '../endpoints/registry';
import { ReservationBook } from '../endpoints/reservations';
import { StartTrace } from '../endpoints/start-trace';
import { EtcdIpam } from '../ipam/ipam';
import { NodeMetrics } from '../metrics/node-metrics';
import { dockerClient } from './docker-client';

export interface NodeEndpoints {
  store: EndpointStore;
  /** Live endpoints of this process (the plugin's). */
  registry: EndpointRegistry;
  /** What the proxy reserved per container (Join names containers from it). */
  reservations: ReservationBook;
  /** Reservations whose create is on its way through dockerd (never collected). */
  inflight: InflightHandles;
  lifecycle: EndpointLifecycle;
  /** Records from dockerd's view, for starts the plugin's Join could not name. */
  recorder: EndpointRecorder;
  /** Where each container start spends its time (debug lines, calico_start_phase_seconds). */
  trace: StartTrace;
}

export interface NodeContext {
  hostname: string;
  stateDir: string;
  log: Logger;
  datastore: Datastore;
  /** The process's one IPAM: it batches this host's concurrent allocations, so everything shares it. */
  ipam: EtcdIpam;
  /** The real dockerd (never the proxy). */
  docker: Dockerode;
  endpoints: NodeEndpoints;
  /** The process's one metrics registry; components record through its recorders, later ones register on `metrics.registry`. */
  metrics: NodeMetrics;
}

export function makeNodeContext(o: { hostname: string; stateDir: string; log: Logger; datastore: Datastore; dockerUpstream: string }): NodeContext {
  const { hostname, log, datastore } = o;
  const metrics = new NodeMetrics();
  datastore.observer = metrics.etcd;
  const ipam = new EtcdIpam(datastore, { log: log.child({ component: 'ipam' }), metrics: metrics.ipam });
  const docker = dockerClient(o.dockerUpstream);
  const store = new EndpointStore(datastore);
  const registry = new EndpointRegistry();
  const reservations = new ReservationBook();
  const trace = new StartTrace({ log: log.child({ component: 'start-trace' }), observe: metrics.startPhase });
  const lifecycle = new EndpointLifecycle({ host: hostname, store, registry, reservations, ipam, trace, log: log.child({ component: 'endpoints' }) });
  return {
    hostname,
    stateDir: o.stateDir,
    log,
    datastore,
    ipam,
    docker,
    endpoints: { store, registry, reservations, inflight: new InflightHandles(), lifecycle, recorder: new EndpointRecorder(docker, lifecycle), trace },
    metrics,
  };
}
