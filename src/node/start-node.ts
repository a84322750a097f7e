// The composition root: the one place that builds the node's components
// from the node context and starts them in order. No other folder wires
// components together.
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { PoolStore, ProfileStore } from '../datastore';
import { IptablesApplier } from '../dataplane/applier/iptables-applier';
import { NatOutgoing } from '../dataplane/nat-outgoing/nat-outgoing';
import { DatastoreComponent, NodeEtcdOptions } from '../etcd/datastore-component';
import { DEFAULT_PLUGIN_DIR } from '../names';
import { DockerPlugin } from '../plugin/docker-plugin';
import { DockerProxy, ProxyOptions } from '../proxy';
import { calicoInterceptors } from '../proxy/interceptors';
import { Reconciler } from '../reconciler/reconciler';
import { PolicyComponent } from '../policy/component';
import { Syncer } from '../syncer';
import type { Component } from './component';
import { NodeContext, makeNodeContext } from './context';
import { NodeIdentity } from './identity';
import { NodeProcess } from './node-process';
import { StatusFile } from './status-file';

/** The Docker network + IPAM driver slot: `--plugin-name` and the real dockerd. */
export interface PluginNodeOptions {
  /** Socket /run/docker/plugins/<name>.sock and the driver names. */
  pluginName: string;
  /** The real dockerd (unix:///... or tcp://host:port), never the proxy. */
  dockerUpstream: string;
}

/** Reconciler knobs `calicoctl node` (or a test) may set. */
export interface ReconcilerNodeOptions {
  sweepIntervalMs?: number;
  /** Grace before a reservation without a container is collected. */
  gcGraceMs?: number;
}

/**
 * Everything `calicoctl node` was asked for, after flag/env parsing.
 * Each component's options live in its own field.
 */
export interface NodeOptions {
  /** This host's name in the datastore (default: os.hostname()). */
  hostname: string;
  /** Where the node keeps pid file, logs, node id, embedded etcd data. */
  stateDir: string;
  /** BGP peering addresses (`calicoctl node --ip=... --ip6=...`). */
  ip?: string;
  ip6?: string;
  /** The Docker API proxy (listen, upstream, TLS); absent: no proxy in this node. */
  proxy?: ProxyOptions;
  /** etcd endpoints and whether an embedded member may be started; absent: the proxy alone. */
  etcd?: NodeEtcdOptions;
  /** The Docker network + IPAM driver; needs etcd. */
  plugin?: PluginNodeOptions;
  reconciler?: ReconcilerNodeOptions;
  /**
   * No policy component (bench/run only, `calicoctl node --no-policy`, hidden):
   * measures what programming policy costs a container's start. Unsafe: a
   * workload is then neither filtered nor, under Docker's FORWARD DROP, reachable.
   */
  noPolicy?: boolean;
}

/**
 * Starts the node: the datastore first (etcd, or the embedded member), then
 * the node context built on it, then every component in this order, each
 * relying on the ones before it:
 *   identity    this host name held by this process; BGP addresses registered
 *   syncer      snapshot of /calico/v1 + etcd watch: what the consumers below follow
 *   applier     the one kernel applier (iptables, ipset): desired state in, diffs applied
 *   nat         MASQUERADE for --nat-outgoing pools (syncer -> applier)
 *   policy      profiles, tags, rules as filter chains and ipsets (syncer -> compiler -> applier);
 *               an endpoint recorded at Join has its chains before Join returns
 *   plugin      Docker network + IPAM driver; records endpoints at Join
 *   proxy       Docker API on :2377 (pass-through + create/inspect interceptors)
 *   reconciler  Docker events + periodic sweep
 *   status-file what the components report, in <stateDir>/node-status.json for `calicoctl status`
 * Stopped in reverse, each stop bounded (NodeProcess).
 */
export async function startNode(opts: NodeOptions, log: Logger): Promise<NodeProcess> {
  const node = new NodeProcess(log);
  if (!opts.etcd || !opts.plugin) {
    // --proxy-only: plain pass-through, nothing of Calico.
    if (opts.proxy) await node.start(new DockerProxy(opts.proxy, log.child({ component: 'proxy' })));
    return node;
  }
  const datastore = new DatastoreComponent({ etcd: opts.etcd, stateDir: opts.stateDir }, log.child({ component: 'datastore' }));
  await node.start(datastore);
  const ctx = makeNodeContext({ hostname: opts.hostname, stateDir: opts.stateDir, log, datastore: datastore.datastore, dockerUpstream: opts.plugin.dockerUpstream });
  for (const c of components(ctx, opts, opts.plugin, opts.etcd)) await node.start(c);
  await node.start(new StatusFile({ stateDir: opts.stateDir, components: () => node.components(), log: log.child({ component: 'status-file' }) }));
  return node;
}

function components(ctx: NodeContext, opts: NodeOptions, plugin: PluginNodeOptions, etcd: NodeEtcdOptions): Component[] {
  const { log, hostname, datastore, ipam, docker, endpoints } = ctx;
  const child = (component: string) => log.child({ component });
  const identity = new NodeIdentity(datastore, { hostname, stateDir: ctx.stateDir, ip: opts.ip, ip6: opts.ip6, detectIp: detectIPv4 }, child('identity'));
  const syncer = new Syncer(datastore, log);
  // Nothing is applied until every owner has said what it wants: a chain of
  // one owner must not look stale (and go) while only another has spoken.
  const applier = new IptablesApplier({
    log: child('kernel-applier'),
    expectOwners: opts.noPolicy ? [NatOutgoing.OWNER] : [NatOutgoing.OWNER, PolicyComponent.OWNER],
  });
  const nat = new NatOutgoing({ applier, syncer, log: child('nat-outgoing') });
  const policy = opts.noPolicy ? undefined : new PolicyComponent({ host: hostname, datastore, syncer, applier, log: child('policy') });
  if (policy) endpoints.lifecycle.onRecorded((ep) => policy.endpointRecorded(ep));
  const dockerPlugin = new DockerPlugin({
    pluginName: plugin.pluginName,
    hostname,
    ipam,
    docker,
    registry: endpoints.registry,
    lifecycle: endpoints.lifecycle,
    hasIpv6Pool: async () => (await new PoolStore(datastore).list(6)).length > 0,
    log,
  });
  const proxy = opts.proxy
    ? new DockerProxy(
        {
          ...opts.proxy,
          interceptors: [
            ...(opts.proxy.interceptors ?? []),
            ...calicoInterceptors({
              ipam,
              host: hostname,
              docker,
              pluginSocket: path.join(DEFAULT_PLUGIN_DIR, `${plugin.pluginName}.sock`),
              inflight: endpoints.inflight,
              reservations: endpoints.reservations,
              etcdEndpoints: etcd.endpoints.endpoints,
              ensureProfiles: async (names) => {
                const profiles = new ProfileStore(datastore);
                for (const n of names) if (await profiles.ensure(n)) log.info({ profile: n }, `created profile ${n} with the default rules (CALICO_PROFILE)`);
              },
            }),
          ],
        },
        child('proxy'),
      )
    : undefined;
  const reconciler = new Reconciler({
    docker,
    ipam,
    store: endpoints.store,
    lifecycle: endpoints.lifecycle,
    recorder: endpoints.recorder,
    inflight: endpoints.inflight,
    host: hostname,
    sweepLinks: () => dockerPlugin.sweepLinks(),
    log: child('reconciler'),
    sweepIntervalMs: opts.reconciler?.sweepIntervalMs,
    gcGraceMs: opts.reconciler?.gcGraceMs,
  });
  return [identity, syncer, applier, nat, ...(policy ? [policy] : []), dockerPlugin, ...(proxy ? [proxy] : []), reconciler];
}

/** The first non-internal IPv4 address of this host, as BGP peers would reach it. */
function detectIPv4(): string | undefined {
  for (const addrs of Object.values(os.networkInterfaces())) {
    const a = addrs?.find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  return undefined;
}
