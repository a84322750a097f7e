// The node's container-networking parts beside the plugin: the proxy's
// create/start interceptors, the reconciler and NAT outgoing, all reaching
// the datastore once the datastore component has started.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Datastore } from '../datastore';
import { EndpointStore, PoolStore } from '../datastore';
import { hostIfName } from '../names';
import { NatOutgoing } from '../dataplane/nat-outgoing/nat-outgoing';
import { DEFAULT_PLUGIN_DIR } from '../names';
import { dockerClient, sharedIpam } from '../plugin/node-wiring';
import type { Interceptor } from '../proxy/interceptor';
import { calicoInterceptors, InflightHandles, ReservationBook } from '../proxy/interceptors';
import type { EndpointRegistry } from '../plugin/endpoints';
import { knownFromPlugin } from './plugin-endpoint';
import { EndpointRecorder } from './endpoint-recorder';
import { EndpointStorePort } from './endpoint-store-adapter';
import { Reconciler } from './reconciler';

/** Reconciler knobs `calicoctl node` (or a test) may set. */
export interface ReconcilerNodeOptions {
  sweepIntervalMs?: number;
  /** Grace before a reservation without a container is collected. */
  gcGraceMs?: number;
}

export interface NetworkingParts {
  interceptors: Interceptor[];
  reconciler: Reconciler;
  nat: NatOutgoing;
}

export function createNetworking(o: {
  hostname: string;
  pluginName: string;
  dockerUpstream: string;
  etcdEndpoints: string[];
  datastore: () => Datastore;
  reconciler?: ReconcilerNodeOptions;
  /** The plugin's live endpoints: the start path records from them without asking dockerd. */
  pluginEndpoints?: EndpointRegistry;
  log: Logger;
}): NetworkingParts {
  const docker = dockerClient(o.dockerUpstream);
  const ipam = () => sharedIpam(o.datastore(), o.log);
  const endpoints = new EndpointStorePort(() => new EndpointStore(o.datastore()));
  const reservations = new ReservationBook();
  const known = o.pluginEndpoints ? knownFromPlugin(o.hostname, reservations, o.pluginEndpoints) : undefined;
  const recorder = new EndpointRecorder(docker, endpoints, o.hostname, hostIfName, o.log.child({ component: 'endpoints' }), known);
  const inflight = new InflightHandles();
  return {
    interceptors: calicoInterceptors({
      ipam,
      host: o.hostname,
      docker,
      pluginSocket: path.join(DEFAULT_PLUGIN_DIR, `${o.pluginName}.sock`),
      recorder,
      inflight,
      etcdEndpoints: o.etcdEndpoints,
      reservations,
    }),
    reconciler: new Reconciler({
      docker,
      ipam,
      endpoints,
      recorder,
      inflight,
      host: o.hostname,
      ifNameFor: hostIfName,
      log: o.log.child({ component: 'reconciler' }),
      sweepIntervalMs: o.reconciler?.sweepIntervalMs,
      gcGraceMs: o.reconciler?.gcGraceMs,
      onRemoved: (id) => reservations.delete(id),
    }),
    nat: new NatOutgoing({ listPools: () => new PoolStore(o.datastore()).list(), log: o.log.child({ component: 'nat-outgoing' }) }),
  };
}
