import Dockerode from 'dockerode';
import type { Logger } from 'pino';
import { PoolStore } from '../datastore';
import type { Datastore } from '../datastore';
import { EtcdIpam } from '../ipam/ipam';
import { DockerPlugin } from './docker-plugin';

/** What `calicoctl node` passes for the plugin slot. */
export interface PluginNodeOptions {
  /** `--plugin-name`: socket /run/docker/plugins/<name>.sock and the driver names. */
  pluginName: string;
  /** `--docker-upstream`: the real dockerd (unix:///... or tcp://host:port), never the proxy. */
  dockerUpstream: string;
}

/** A Docker client for unix:///path, /path or tcp://host:port. */
export function dockerClient(upstream: string): Dockerode {
  if (upstream.startsWith('unix://')) return new Dockerode({ socketPath: upstream.slice('unix://'.length) });
  if (upstream.startsWith('/')) return new Dockerode({ socketPath: upstream });
  const m = /^(?:tcp|http):\/\/\[?([^\]/]+?)\]?:(\d+)\/?$/.exec(upstream);
  if (!m) throw new Error(`cannot reach Docker at "${upstream}": expected unix:///path or tcp://host:port`);
  return new Dockerode({ host: m[1], port: Number(m[2]), protocol: 'http' });
}

const ipams = new WeakMap<Datastore, EtcdIpam>();

/**
 * The process's one IPAM on a datastore: EtcdIpam batches a host's
 * allocations per instance, so the proxy and the plugin must share it.
 */
export function sharedIpam(ds: Datastore, log: Logger): EtcdIpam {
  let ipam = ipams.get(ds);
  if (!ipam) {
    ipam = new EtcdIpam(ds, { log: log.child({ component: 'ipam' }) });
    ipams.set(ds, ipam);
  }
  return ipam;
}

/** The plugin component of a node, reading the datastore once the datastore component has started. */
export function createDockerPlugin(
  o: PluginNodeOptions,
  hostname: string,
  datastore: () => Datastore,
  log: Logger,
): DockerPlugin {
  return new DockerPlugin({
    pluginName: o.pluginName,
    hostname,
    docker: dockerClient(o.dockerUpstream),
    ipam: () => sharedIpam(datastore(), log),
    hasIpv6Pool: async () => (await new PoolStore(datastore()).list(6)).length > 0,
    log,
  });
}
