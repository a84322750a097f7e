// A node process for the container-networking tests, assembled from the same
// components `calicoctl node` wires (datastore, plugin, proxy + interceptors,
// reconciler), with the knobs tests need (plugin name, GC grace, sweep
// interval). A separate process so tests can SIGKILL it mid-start.
// Usage: node calico-node-main.js '<json LabNodeConfig>'; prints "READY <proxy address>".
import Dockerode from 'dockerode';
import path from 'node:path';
import { Datastore, EndpointStore, PoolStore } from '../../src/datastore';
import { EtcdIpam } from '../../src/ipam/ipam';
import { DockerPlugin } from '../../src/plugin/docker-plugin';
import { DEFAULT_PLUGIN_DIR } from '../../src/plugin/names';
import { hostIfName } from '../../src/dataplane/names';
import { DockerProxy } from '../../src/proxy';
import { formatAddress } from '../../src/proxy/address';
import { calicoInterceptors, InflightHandles } from '../../src/proxy/interceptors';
import { EndpointRecorder } from '../../src/reconciler/endpoint-recorder';
import { EndpointStorePort } from '../../src/reconciler/endpoint-store-adapter';
import { Reconciler } from '../../src/reconciler/reconciler';
import { NodeProcess } from '../../src/node/node-process';
import { createLogger } from '../../src/log/logger';

export interface LabNodeConfig {
  etcd: string[];
  dockerSocket: string;
  listen: string;
  hostname: string;
  pluginName: string;
  sweepIntervalMs: number;
  gcGraceMs: number;
  logFile: string;
  logLevel?: string;
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]) as LabNodeConfig;
  const log = createLogger({ level: cfg.logLevel ?? 'info', destination: cfg.logFile, pretty: false });
  const ds = new Datastore({ endpoints: cfg.etcd, log });
  const ipam = new EtcdIpam(ds, { log });
  const docker = new Dockerode({ socketPath: cfg.dockerSocket });
  const plugin = new DockerPlugin({
    pluginName: cfg.pluginName,
    hostname: cfg.hostname,
    ipam,
    docker,
    hasIpv6Pool: async () => (await new PoolStore(ds).list(6)).length > 0,
    log,
  });
  const endpoints = new EndpointStorePort(new EndpointStore(ds));
  const recorder = new EndpointRecorder(docker, endpoints, cfg.hostname, hostIfName, log);
  const inflight = new InflightHandles();
  const proxy = new DockerProxy(
    {
      listen: cfg.listen,
      upstream: `unix://${cfg.dockerSocket}`,
      interceptors: calicoInterceptors({
        ipam,
        host: cfg.hostname,
        docker,
        pluginSocket: path.join(DEFAULT_PLUGIN_DIR, `${cfg.pluginName}.sock`),
        recorder,
        inflight,
        etcdEndpoints: cfg.etcd,
      }),
    },
    log.child({ component: 'proxy' }),
  );
  const reconciler = new Reconciler({
    docker,
    ipam,
    endpoints,
    recorder,
    inflight,
    host: cfg.hostname,
    ifNameFor: hostIfName,
    log: log.child({ component: 'reconciler' }),
    sweepIntervalMs: cfg.sweepIntervalMs,
    gcGraceMs: cfg.gcGraceMs,
    maxBackoffMs: 1000,
  });
  const node = new NodeProcess(log).add(plugin).add(proxy).add(reconciler);
  await node.start();
  process.stdout.write(`READY ${formatAddress(proxy.address)}\n`);
  const stop = async () => {
    await node.stop();
    ds.close();
    log.flush();
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

main().catch((e) => {
  process.stderr.write(`calico lab node failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
