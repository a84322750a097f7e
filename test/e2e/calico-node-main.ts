// The lab's node process: startNode() exactly as `calicoctl node` calls it
// (datastore, plugin, proxy with the Calico interceptors, reconciler, NAT
// outgoing), with the knobs tests need (plugin name, host name, GC grace,
// sweep interval). A separate process so tests can SIGKILL it mid-start.
// Usage: node calico-node-main.js '<json LabNodeConfig>'; prints "READY".
import { startNode } from '../../src/node/start-node';
import { createLogger } from '../../src/log/logger';

export interface LabNodeConfig {
  etcd: string[];
  dockerSocket: string;
  listen: string;
  hostname: string;
  hostIp: string;
  pluginName: string;
  stateDir: string;
  sweepIntervalMs: number;
  gcGraceMs: number;
  logFile: string;
  logLevel?: string;
  /** --metrics: where /metrics and /healthz are served (absent: off). */
  metrics?: string;
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]) as LabNodeConfig;
  const log = createLogger({ level: cfg.logLevel ?? 'info', destination: cfg.logFile, pretty: false });
  const upstream = `unix://${cfg.dockerSocket}`;
  const node = await startNode(
    {
      hostname: cfg.hostname,
      stateDir: cfg.stateDir,
      ip: cfg.hostIp,
      proxy: { listen: cfg.listen, upstream },
      etcd: { endpoints: { endpoints: cfg.etcd, source: '--etcd-endpoints' }, embedded: 'off' },
      plugin: { pluginName: cfg.pluginName, dockerUpstream: upstream },
      reconciler: { sweepIntervalMs: cfg.sweepIntervalMs, gcGraceMs: cfg.gcGraceMs },
      metrics: cfg.metrics ? { listen: cfg.metrics } : undefined,
    },
    log,
  );
  process.stdout.write('READY\n');
  const stop = async () => {
    await node.stop();
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
