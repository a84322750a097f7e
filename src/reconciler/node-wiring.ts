// The node's container-networking parts beside the plugin: the proxy's
// create/start interceptors, the reconciler and NAT outgoing, all reaching
// the datastore once the datastore component has started.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Datastore } from '../datastore';
import { EndpointStore, PoolStore } from '../datastore';
import { hostIfName } from '../dataplane/names';
import { NatOutgoing } from '../dataplane/nat-outgoing/nat-outgoing';
import { DEFAULT_PLUGIN_DIR } from '../plugin/names';
import { dockerClient, sharedIpam } from '../plugin/node-wiring';
import type { Interceptor } from '../proxy/interceptor';
import { calicoInterceptors, InflightHandles, ReservationBook } from '../proxy/interceptors';
import type { EndpointRegistry } from '../plugin/endpoints';
import { knownFromPlugin } from './plugin-endpoint';
import { EndpointRecorder } from './endpoint-recorder';
import { EndpointStorePort } from './endpoint-store-adapter';
import { Reconciler } from './reconciler';
// Stopgap NAT outgoing wiring (below):
import type { Pool } from '../datastore/pool-store';
import { IptablesApplier } from '../dataplane/applier/iptables-applier';
import type { Component } from '../node/component';

/** Reconciler knobs `calicoctl node` (or a test) may set. */
export interface ReconcilerNodeOptions {
  sweepIntervalMs?: number;
  /** Grace before a reservation without a container is collected. */
  gcGraceMs?: number;
}

export interface NetworkingParts {
  interceptors: Interceptor[];
  reconciler: Reconciler;
  /** The kernel applier with NAT outgoing as its user (stopgap wiring below). */
  nat: Component;
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
    nat: natOutgoingStopgap(() => new PoolStore(o.datastore()).list(), o.log),
  };
}

/**
 * STOPGAP, lead replaces with syncer: the kernel applier and NAT outgoing,
 * fed by polling the pools every 3 s until the datastore syncer feeds
 * NatOutgoing.setPools on every pool event. Stopping leaves the rules in place.
 */
function natOutgoingStopgap(listPools: () => Promise<Pool[]>, log: Logger): Component {
  const applier = new IptablesApplier({ log: log.child({ component: 'kernel-applier' }), expectOwners: [NatOutgoing.OWNER] });
  const nat = new NatOutgoing({ applier, log: log.child({ component: 'nat-outgoing' }) });
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  const poll = async () => {
    try {
      const pools = await listPools();
      const text = JSON.stringify(pools);
      if (text !== last) nat.setPools(pools);
      last = text;
    } catch (e) {
      log.warn({ err: e }, 'NAT outgoing: pools not read or not accepted by the kernel applier; tried again in 3 s');
    }
  };
  return {
    name: 'nat-outgoing',
    async start() {
      await applier.start();
      await nat.start();
      await poll();
      timer = setInterval(() => void poll(), 3000);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      await nat.stop();
      await applier.stop();
    },
  };
}
