// The composition root: the one place that builds the node's components
// from the node context and starts them in order. No other folder wires
// components together.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { Logger } from 'pino';
import { BgpComponent } from '../bgp/component';
import { PoolStore, ProfileStore } from '../datastore';
import { IptablesApplier } from '../dataplane/applier/iptables-applier';
import { tracedReservations } from '../endpoints/start-trace';
import { NatOutgoing } from '../dataplane/nat-outgoing/nat-outgoing';
import { Tunnel } from '../tunnel/tunnel';
import { DatastoreComponent, NodeEtcdOptions } from '../etcd/datastore-component';
import { DEFAULT_PLUGIN_DIR } from '../names';
import { DockerPlugin } from '../plugin/docker-plugin';
import { DockerProxy, ProxyOptions } from '../proxy';
import { calicoInterceptors } from '../proxy/interceptors';
import { Reconciler } from '../reconciler/reconciler';
import { PolicyComponent } from '../policy/component';
import type { EndpointToHostAction } from '../policy/compile';
import { MetricsServer, MetricsServerOptions, NodeMetrics } from '../metrics';
import { Syncer } from '../syncer';
import type { Component } from '../lifecycle/component';
import { NodeContext, makeNodeContext } from './context';
import { nodeHealth } from './health';
import { NodeIdentity } from './identity';
import { LayoutVersionCheck } from './layout-version';
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
  /** This host's own AS (`calicoctl node --as`), registered as host/<h>/bgp_as; absent: the global AS. */
  as?: string;
  /** The Docker API proxy (listen, upstream, TLS); absent: no proxy in this node. */
  proxy?: ProxyOptions;
  /** etcd endpoints and whether an embedded member may be started; absent: the proxy alone. */
  etcd?: NodeEtcdOptions;
  /** The Docker network + IPAM driver; needs etcd. */
  plugin?: PluginNodeOptions;
  reconciler?: ReconcilerNodeOptions;
  /** `--metrics`: /metrics and /healthz (off when absent). */
  metrics?: Pick<MetricsServerOptions, 'listen' | 'tls'>;
  /**
   * No policy component (bench/run only, `calicoctl node --no-policy`, hidden):
   * measures what programming policy costs a container's start. Unsafe: a
   * workload is then neither filtered nor, under Docker's FORWARD DROP, reachable.
   */
  noPolicy?: boolean;
  /** `--endpoint-to-host-action`: containers to this host's own addresses (default drop; docs/policy.md). */
  endpointToHostAction?: EndpointToHostAction;
}

/**
 * Starts the node: the datastore first (etcd, or the embedded member), then
 * the node context built on it, then every component in this order, each
 * relying on the ones before it:
 *   identity    this host name held by this process; BGP addresses registered
 *   syncer      snapshot of /calico/v1 + etcd watch: what the consumers below follow
 *   bgp         this host's BIRD, its config rendered from the syncer and this host's blocks
 *   applier     the one kernel applier (iptables, ipset): desired state in, diffs applied
 *   nat         MASQUERADE for --nat-outgoing pools (syncer -> applier)
 *   tunnel      IP-in-IP pools: tunl0, routes through it to other hosts' blocks, the protocol-4 filter
 *   policy      profiles, tags, rules as filter chains and ipsets (syncer -> compiler -> applier);
 *               an endpoint recorded at Join has its chains before Join returns
 *   plugin      Docker network + IPAM driver; records endpoints at Join
 *   proxy       Docker API on :2377 (pass-through + create/inspect interceptors)
 *   reconciler  Docker events + periodic sweep
 *   status-file what the components report, in <stateDir>/node-status.json for `calicoctl status`
 *   metrics     /metrics and /healthz (--metrics), last: its health covers every component above
 * Stopped in reverse, each stop bounded (NodeProcess).
 */
export async function startNode(opts: NodeOptions, log: Logger): Promise<NodeProcess> {
  const node = new NodeProcess(log);
  const serveMetrics = (metrics: NodeMetrics) =>
    opts.metrics && node.start(new MetricsServer({ ...opts.metrics, metrics, health: () => nodeHealth(node.components()), log: log.child({ component: 'metrics' }) }));
  if (!opts.etcd || !opts.plugin) {
    // --proxy-only: plain pass-through, nothing of Calico.
    const metrics = opts.metrics && new NodeMetrics();
    if (opts.proxy) await node.start(new DockerProxy({ ...opts.proxy, metrics: metrics?.proxy }, log.child({ component: 'proxy' })));
    if (metrics) await serveMetrics(metrics);
    return node;
  }
  const datastore = new DatastoreComponent({ etcd: opts.etcd, stateDir: opts.stateDir }, log.child({ component: 'datastore' }));
  await node.start(datastore);
  await node.start(new LayoutVersionCheck(() => datastore.datastore, log.child({ component: 'layout-version' })));
  const ctx = makeNodeContext({ hostname: opts.hostname, stateDir: opts.stateDir, log, datastore: datastore.datastore, dockerUpstream: opts.plugin.dockerUpstream });
  for (const c of components(ctx, opts, opts.plugin, opts.etcd)) await node.start(c);
  await node.start(new StatusFile({ stateDir: opts.stateDir, host: opts.hostname, components: () => node.components(), log: log.child({ component: 'status-file' }) }));
  await serveMetrics(ctx.metrics);
  return node;
}

function components(ctx: NodeContext, opts: NodeOptions, plugin: PluginNodeOptions, etcd: NodeEtcdOptions): Component[] {
  const { log, hostname, datastore, ipam, docker, endpoints } = ctx;
  const child = (component: string) => log.child({ component });
  const identity = new NodeIdentity(datastore, { hostname, stateDir: ctx.stateDir, ip: opts.ip, ip6: opts.ip6, as: opts.as, detectIp: () => detectIPv4(child('identity')) }, child('identity'));
  const syncer = new Syncer(datastore, log);
  // Built before BGP, started after the applier: BIRD's cross-subnet filter asks it for this host's subnet.
  let tunnel: Tunnel | undefined;
  const bgp = new BgpComponent({ hostname, stateDir: ctx.stateDir, datastore, syncer, log, localSubnet: () => tunnel?.localSubnet() });
  // Nothing is applied until every owner has said what it wants: a chain of
  // one owner must not look stale (and go) while only another has spoken.
  const applier = new IptablesApplier({
    log: child('kernel-applier'),
    expectOwners: opts.noPolicy ? [NatOutgoing.OWNER, Tunnel.OWNER] : [NatOutgoing.OWNER, Tunnel.OWNER, PolicyComponent.OWNER],
  });
  tunnel = new Tunnel({ hostname, datastore, syncer, applier, ipam, log: child('tunnel') });
  const nat = new NatOutgoing({ applier, syncer, log: child('nat-outgoing') });
  const policy = opts.noPolicy ? undefined : new PolicyComponent({ host: hostname, datastore, syncer, applier, options: { endpointToHostAction: opts.endpointToHostAction }, log: child('policy') });
  if (policy) endpoints.lifecycle.onRecorded((ep) => policy.endpointRecorded(ep));
  const dockerPlugin = new DockerPlugin({
    pluginName: plugin.pluginName,
    hostname,
    ipam,
    docker,
    registry: endpoints.registry,
    lifecycle: endpoints.lifecycle,
    trace: endpoints.trace,
    hasIpv6Pool: async () => (await new PoolStore(datastore).list(6)).length > 0,
    endpointMtu: (ipv4) => tunnel?.endpointMtu(ipv4),
    log,
    metrics: ctx.metrics.plugin,
  });
  const proxy = opts.proxy
    ? new DockerProxy(
        {
          ...opts.proxy,
          metrics: ctx.metrics.proxy,
          interceptors: [
            ...(opts.proxy.interceptors ?? []),
            ...calicoInterceptors({
              ipam: tracedReservations(ipam, endpoints.trace),
              host: hostname,
              docker,
              pluginSocket: path.join(DEFAULT_PLUGIN_DIR, `${plugin.pluginName}.sock`),
              inflight: endpoints.inflight,
              reservations: endpoints.reservations,
              etcdEndpoints: datastore.endpoints,
              ensureProfiles: async (names) => {
                const profiles = new ProfileStore(datastore);
                const created: string[] = [];
                for (const n of names) if (await profiles.ensure(n)) created.push(n);
                for (const n of created) log.info({ profile: n }, `created profile ${n} with the default rules (CALICO_PROFILE)`);
                return created;
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
    metrics: ctx.metrics.reconciler,
    trace: endpoints.trace,
  });
  return [identity, syncer, bgp, applier, nat, tunnel, ...(policy ? [policy] : []), dockerPlugin, ...(proxy ? [proxy] : []), reconciler];
}

interface IpRoute {
  dst: string;
  dev?: string;
  prefsrc?: string;
  metric?: number;
}
interface IpAddrInfo {
  ifname: string;
  addr_info?: { family: string; local: string; scope?: string }[];
}

/**
 * The address BGP peers should use to reach this host: the source address of
 * the default route (its prefsrc, else the first global address of its
 * interface), the lowest metric first. Pure: `ip -j -4 route show default`
 * and `ip -j -4 addr show` output in.
 */
export function defaultRouteAddress(routesJson: string, addrsJson: string): { address: string; dev: string } | undefined {
  const routes = (JSON.parse(routesJson || '[]') as IpRoute[]).filter((r) => r.dst === 'default' && r.dev).sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0));
  const links = JSON.parse(addrsJson || '[]') as IpAddrInfo[];
  for (const r of routes) {
    if (r.prefsrc) return { address: r.prefsrc, dev: r.dev! };
    const a = links.find((l) => l.ifname === r.dev)?.addr_info?.find((x) => x.family === 'inet' && (x.scope ?? 'global') === 'global');
    if (a) return { address: a.local, dev: r.dev! };
  }
  return undefined;
}

/** `--ip` absent: the address of the interface holding the default route (logged), never just the first one found. */
function detectIPv4(log: Logger): string | undefined {
  try {
    const ip = (args: string[]) => execFileSync('ip', ['-j', '-4', ...args], { encoding: 'utf8', timeout: 5000 });
    const found = defaultRouteAddress(ip(['route', 'show', 'default']), ip(['addr', 'show']));
    if (found) log.info(found, `detected this host's IPv4 address ${found.address} on ${found.dev}, the interface of the default route (set it with --ip)`);
    else log.warn('no IPv4 default route with an address: cannot detect this host\'s IPv4 address (set it with --ip)');
    return found?.address;
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'detecting this host\'s IPv4 address with `ip -j -4 route show default` failed (set it with --ip)');
    return undefined;
  }
}
