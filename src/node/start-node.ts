import type { Logger } from 'pino';
import { NodeProcess } from './node-process';
import { DockerProxy, ProxyOptions } from '../proxy';
import { DatastoreComponent, NodeEtcdOptions } from '../etcd/datastore-component';
import { createDockerPlugin, PluginNodeOptions } from '../plugin/node-wiring';
import { createNetworking, ReconcilerNodeOptions } from '../reconciler/node-wiring';

/**
 * Everything `calicoctl node` was asked for, after flag/env parsing.
 * Each component's options live in its own field, owned by that component.
 */
export interface NodeOptions {
  /** This host's name in the datastore (default: os.hostname()). */
  hostname: string;
  /** Where the node keeps pid file, logs, embedded etcd data. */
  stateDir: string;
  /** BGP peering addresses (`calicoctl node --ip=... --ip6=...`). */
  ip?: string;
  ip6?: string;
  /** The Docker API proxy (listen, upstream, TLS); absent: no proxy in this node. */
  proxy?: ProxyOptions;
  /** etcd endpoints and whether an embedded member may be started; absent: no datastore in this node. */
  etcd?: NodeEtcdOptions;
  /** The Docker network + IPAM driver (--plugin-name, the real dockerd); needs etcd. Absent: no plugin. */
  plugin?: PluginNodeOptions;
  /** Reconciler sweep interval and GC grace (defaults 30 s / 120 s). */
  reconciler?: ReconcilerNodeOptions;
}

/**
 * Builds the node process: components side by side, started in this order and
 * stopped in reverse. Each component is added by one line below, in its slot:
 *   1. datastore: connect to etcd, or start the embedded member
 *   2. plugin: Docker network + IPAM driver on /run/docker/plugins/<name>.sock
 *   3. proxy: Docker API on :2377 (pass-through + interceptors)
 *   4. reconciler: Docker events + periodic sweep
 *   (later: policy, bgp)
 */
export async function startNode(opts: NodeOptions, log: Logger): Promise<NodeProcess> {
  const node = new NodeProcess(log);
  // 1. datastore: etcd (or the embedded member), default pools, this host's registration
  const datastore = opts.etcd ? new DatastoreComponent({ ...opts, etcd: opts.etcd }, log.child({ component: 'datastore' })) : undefined;
  if (datastore) node.add(datastore);
  // 2. plugin: Docker network + IPAM driver, the calico Docker network
  const plugin = datastore && opts.plugin ? createDockerPlugin(opts.plugin, opts.hostname, () => datastore.datastore, log) : undefined;
  if (plugin) node.add(plugin);
  // CALICO_IP networking (create/start interceptors, reconciler, NAT outgoing): needs the datastore and the plugin
  const networking = datastore && opts.plugin ? createNetworking({ ...opts.plugin, hostname: opts.hostname, etcdEndpoints: opts.etcd!.endpoints.endpoints, datastore: () => datastore.datastore, reconciler: opts.reconciler, pluginEndpoints: plugin?.endpoints, log }) : undefined;
  // 3. proxy
  if (opts.proxy) node.add(new DockerProxy({ ...opts.proxy, interceptors: [...(opts.proxy.interceptors ?? []), ...(networking?.interceptors ?? [])] }, log.child({ component: 'proxy' })));
  // 4. reconciler, then NAT outgoing for --nat-outgoing pools
  if (networking) node.add(networking.reconciler).add(networking.nat);
  await node.start();
  return node;
}
