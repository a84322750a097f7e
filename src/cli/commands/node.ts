import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { CliError, UsageError } from '../errors';
import { addHostnameOption, aliased, dockerOf, hostNameOf } from '../host';
import { registerNodeBgppeer } from './node-bgppeer';
import { createLogger } from '../../log/logger';
import { nodeId } from '../../node/identity';
import { startNode } from '../../node/start-node';
import { addProxyFlags, proxyOptionsFrom, dockerHostHint, ProxyFlags } from './node-proxy';
import { claimPidFile, detach, nodeFiles, removeOwnPidFile } from './node-detach';
import { registerNodeStop } from './node-stop';
import { registerNodeRemove } from './node-remove';
import { etcdConfigFor } from '../datastore';
import { DEFAULT_PLUGIN_NAME } from '../../names';
import { metricsAddress, MetricsListenError } from '../../metrics/listen';
import { ENDPOINT_TO_HOST_ACTIONS, type EndpointToHostAction } from '../../policy';
import { allLoopback, programFor, renderSystemdUnit } from '../init-system';
import { checkSystemDeps } from '../../system/lookup';
import { DEFAULT_STATE_DIR, NODE_UMASK, prepareStateDir } from '../../node/state-dir';
import { clusterOptionsFrom, datastoreReportFromLog, describeDatastore } from '../etcd-cluster';

export { DEFAULT_STATE_DIR };

/** How long a stopping node may take in all before it kills its children and exits. */
const STOP_BOUND_MS = 5000;

interface NodeFlags extends ProxyFlags {
  /** --hostname (old spelling --name, hidden). */
  hostname?: string;
  name?: string;
  docker: string;
  ip?: string;
  ip6?: string;
  as?: string;
  stateDir: string;
  detach?: boolean;
  logLevel: string;
  /** --embedded-etcd / --no-embedded-etcd; undefined means auto. */
  embeddedEtcd?: boolean;
  pluginName: string;
  /** --proxy-only: the Docker API proxy alone, plain pass-through. */
  proxyOnly?: boolean;
  /** --metrics ADDR: /metrics and /healthz there. */
  metrics?: string;
  /** --no-policy (hidden, bench/run only): commander gives policy: false. */
  policy?: boolean;
  /** --endpoint-to-host-action (env CALICO_ENDPOINT_TO_HOST_ACTION): containers to this host's own addresses. */
  endpointToHostAction: EndpointToHostAction;
  /** --init-system: print a systemd unit for these flags and exit. */
  initSystem?: boolean;
  /** --etcd-cluster NAME=IP,... (env CALICO_ETCD_CLUSTER): this host's member of that cluster. */
  etcdCluster?: string;
}

/**
 * `calicoctl node`: starts the node process (proxy, Docker plugin, reconciler,
 * ...) in the foreground, or in the background with --detach.
 */
export function registerNode(program: Command): void {
  const cmd = program
    .command('node')
    .description('Start the Calico node process on this host');
  addHostnameOption(cmd, { oldName: true, help: "this host's name in the datastore (one live node per name; default: this machine's hostname). The CLI's other commands on this machine take it from the node's state directory" });
  cmd
    .option('--ip <IP>', 'this host\'s IPv4 address (BGP peering, as in `calicoctl node --ip=...`)')
    .option('--ip6 <IP6>', 'this host\'s IPv6 address')
    .option('--as <AS>', 'this host\'s own BGP AS number (default: the global AS, `calicoctl bgp default-node-as`)')
    .option('--state-dir <DIR>', 'where the node keeps its pid file, log file and embedded etcd data', DEFAULT_STATE_DIR)
    .option('--detach', 'run in the background; pid file and log file go under --state-dir')
    .option('--log-level <LEVEL>', 'trace, debug, info, warn or error', process.env.CALICO_LOG_LEVEL ?? 'info');
  addProxyFlags(cmd).option('--proxy-only', 'run only the Docker API proxy (no datastore, plugin or reconciler): plain pass-through, to try or debug a docker client');
  cmd
    .option('--embedded-etcd', 'if nothing answers at the configured loopback etcd endpoint, start a local member there (default: only when no endpoint is configured)')
    .option('--no-embedded-etcd', 'never start a local etcd member; wait for the configured etcd')
    .option('--plugin-name <NAME>', 'Docker network/IPAM driver name: socket /run/docker/plugins/<NAME>.sock', DEFAULT_PLUGIN_NAME)
    .option('--metrics <ADDR>', 'serve Prometheus metrics on /metrics and health on /healthz at ADDR (e.g. tcp://127.0.0.1:9099); off loopback only with --tlsverify (the proxy\'s TLS flags)');
  cmd.addOption(
    new Option(
      '--endpoint-to-host-action <ACTION>',
      "containers' traffic to this host's own addresses (etcd, BIRD, the node's ports...): drop = only a profile's outbound allow rule naming a dst_net opens it; accept = the container's outbound rules decide, as in 2015 (docs/policy.md)",
    )
      .choices(ENDPOINT_TO_HOST_ACTIONS)
      .env('CALICO_ENDPOINT_TO_HOST_ACTION')
      .default('drop'),
  );
  cmd.addOption(
    new Option(
      '--etcd-cluster <NAME=IP,...>',
      'run this host\'s embedded etcd as one member of this cluster and use the whole cluster as the datastore; the same list on every host, ' +
        'X; TLS with the --etcd-*-file options, else plain HTTP on ports 2379/2380 ' +
        '(e.g. --etcd-cluster trinity10=10.0.0.10,trinity20=10.0.0.20,trinity30=10.0.0.30)',
    ).env('CALICO_ETCD_CLUSTER'),
  );
  cmd.option('--init-system', 'print a systemd unit that runs this node with these flags (foreground), and exit');
  // bench/run only: the start path without the policy component, to measure what policy costs. Not for hosts.
  cmd.addOption(new Option('--no-policy', 'no policy component (benchmarks only: workloads are then unfiltered)').hideHelp());
  registerNodeBgppeer(cmd);
  cmd.action(async (flags: NodeFlags, command: Command) => {
    const hostname = aliased(command, '--hostname', '--name', 'hostname', 'name') ?? os.hostname();
    flags.dockerUpstream = dockerOf(command);
    const proxy = proxyOptionsFrom(flags);
    const metrics = metricsOptionsFrom(flags, proxy.tls);
    const etcdConfig = etcdConfigFor(command);
    const cluster = flags.proxyOnly ? undefined : clusterOptionsFrom({ ...flags, name: hostname }, etcdConfig);
    const etcd = { ...etcdConfig, embedded: flags.embeddedEtcd === undefined ? 'auto' as const : flags.embeddedEtcd ? 'on' as const : 'off' as const, cluster };
    const mayEmbedEtcd = !flags.proxyOnly && (!!cluster || etcd.embedded === 'on' || (etcd.embedded === 'auto' && etcd.endpoints.source === 'default'));
    // Every program the node runs is installed, or the operator reads which package to add, before anything starts.
    const missingDeps = checkSystemDeps({ proxyOnly: !!flags.proxyOnly, mayEmbedEtcd, dockerSocket: proxy.upstream.startsWith('unix://') ? proxy.upstream.slice('unix://'.length) : undefined });
    if (flags.initSystem) {
      if (missingDeps) process.stderr.write(`warning: ${missingDeps}`);
      process.stdout.write(renderSystemdUnit({ program: programFor(process.execPath, path.resolve(process.argv[1]!)), nodeBinDir: path.dirname(process.execPath), args: process.argv.slice(2), localExternalEtcd: !flags.proxyOnly && !mayEmbedEtcd && allLoopback(etcd.endpoints.endpoints) }));
      return;
    }
    if (missingDeps) throw new CliError(missingDeps);
    // Before the first file is made: the state dir, the plugin socket, etcd's and BIRD's files are root's alone.
    process.umask(NODE_UMASK);
    prepareStateDir(flags.stateDir);
    if (flags.detach) {
      const { pidFile, logFile } = nodeFiles(flags.stateDir);
      const logOffset = fileSize(logFile);
      const pid = await detach(flags.stateDir, proxy.listen, process.argv);
      process.stdout.write(`calicoctl node is running in the background: pid ${pid} (${pidFile}), log ${logFile}\n\n${dockerHostHint(proxy)}`);
      if (!flags.proxyOnly) process.stdout.write(`\nCalico node is running with id: ${nodeId(flags.stateDir)}\n${await datastoreReportFromLog(logFile, logOffset)}`);
      return;
    }
    if (!flags.proxyOnly) claimPidFile(flags.stateDir);
    const log = createLogger({ level: flags.logLevel });
    // Listening before the components start: a SIGTERM during startup stops the node cleanly once started.
    const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    let node;
    try {
      node = await startNode(
        flags.proxyOnly
          ? { hostname, stateDir: flags.stateDir, proxy, metrics }
          : { hostname, stateDir: flags.stateDir, ip: flags.ip, ip6: flags.ip6, as: flags.as, proxy, etcd, plugin: { pluginName: flags.pluginName, dockerUpstream: proxy.upstream }, metrics, noPolicy: flags.policy === false, endpointToHostAction: flags.endpointToHostAction },
        log,
      );
    } catch (e) {
      removeOwnPidFile(flags.stateDir);
      throw new CliError(`calicoctl node failed to start: ${(e as Error).message}`);
    }
    process.stdout.write(dockerHostHint(proxy) + (flags.proxyOnly ? '' : `\nCalico node is running with id: ${nodeId(flags.stateDir)}\n`));
    if (!flags.proxyOnly) process.stdout.write(await describeDatastore(node, log));
    const signal = await stopSignal;
    log.info({ signal }, `${signal}: stopping the node`);
    // The whole stop is bounded: past it, children are killed and the process exits.
    const running = node;
    const forceExit = (why: string) => {
      log.error(`${why}: killing the node's children and exiting`);
      running.abort();
      removeOwnPidFile(flags.stateDir);
      log.flush();
      process.exit(1);
    };
    const hard = setTimeout(() => forceExit(`the node did not stop within ${STOP_BOUND_MS} ms`), STOP_BOUND_MS);
    process.once('SIGTERM', () => forceExit('a second SIGTERM while stopping'));
    process.once('SIGINT', () => forceExit('a second SIGINT while stopping'));
    await node.stop();
    clearTimeout(hard);
    removeOwnPidFile(flags.stateDir);
    log.info('node stopped');
    log.flush();
    // Whatever a component forgot to close must not keep a stopped node alive.
    setTimeout(() => process.exit(0), 100).unref();
  });
  // The running node's name (its state directory) unless `node --hostname` says otherwise.
  registerNodeStop(cmd, () => ({ stateDir: cmd.opts<NodeFlags>().stateDir, hostname: hostNameOf(cmd).name }));
  registerNodeRemove(cmd);
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** --metrics, checked before anything starts: off loopback it needs verified client certificates. */
function metricsOptionsFrom(f: NodeFlags, tls: ReturnType<typeof proxyOptionsFrom>['tls']): { listen: string; tls?: typeof tls } | undefined {
  if (f.metrics === undefined) return undefined;
  try {
    metricsAddress(f.metrics, tls);
  } catch (e) {
    if (e instanceof MetricsListenError) throw new UsageError(e.message);
    throw e;
  }
  return { listen: f.metrics, tls };
}
