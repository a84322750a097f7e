// `calicoctl node --etcd-cluster`: the flag checked against the other etcd
// flags (before anything starts), and the node's "which datastore, how many
// hosts" report once it runs (no silent split brain: a host that starts its
// own single member says so).
import fs from 'node:fs';
import type { Logger } from 'pino';
import { HostStore } from '../datastore';
import { ClusterFlagError, checkClusterTls, planCluster, plainClusterWarning } from '../etcd/cluster';
import { DatastoreComponent } from '../etcd/datastore-component';
import type { EmbeddedClusterOptions } from '../etcd/embedded';
import type { ResolvedEndpoints } from '../etcd/endpoints';
import type { EtcdTlsFiles } from '../etcd/tls';
import type { NodeProcess } from '../node/node-process';
import { CliError } from './errors';

export interface ClusterFlags {
  etcdCluster?: string;
  ip?: string;
  name: string;
  embeddedEtcd?: boolean;
}

/** --etcd-cluster, parsed and checked; undefined without it. Plain-HTTP clusters are warned about on stderr here. */
export function clusterOptionsFrom(flags: ClusterFlags, etcd: { endpoints: ResolvedEndpoints; tls: EtcdTlsFiles }): EmbeddedClusterOptions | undefined {
  if (flags.etcdCluster === undefined || flags.etcdCluster.trim() === '') return undefined;
  if (etcd.endpoints.source !== 'default') {
    throw new CliError(
      `--etcd-cluster runs this host's member of the cluster and uses the cluster itself; it cannot also use ${etcd.endpoints.endpoints.join(', ')} ` +
        `(from ${etcd.endpoints.source}): drop one of them`,
    );
  }
  if (flags.embeddedEtcd === false) throw new CliError('--etcd-cluster runs this host\'s embedded member: it cannot go with --no-embedded-etcd');
  try {
    const files = { ca: etcd.tls.ca?.path, cert: etcd.tls.cert?.path, key: etcd.tls.key?.path };
    const tls = checkClusterTls(files);
    const plan = planCluster(flags.etcdCluster, { ip: flags.ip, name: flags.name, tls });
    if (!tls) process.stderr.write(`warning: ${plainClusterWarning(plan)}\n`);
    return { plan, tls: tls ? { ca: files.ca!, cert: files.cert!, key: files.key! } : undefined };
  } catch (e) {
    if (e instanceof ClusterFlagError) throw new CliError(e.message);
    throw e;
  }
}

/** The line that begins the report (a detached node's parent looks for it in the log). */
export const DATASTORE_LINE = 'Datastore:';

/** "Datastore: <which>\nHosts registered there: N (a, b, c)\n", also logged. */
export async function describeDatastore(node: NodeProcess, log: Logger): Promise<string> {
  const dc = node.components().find((c): c is DatastoreComponent => c instanceof DatastoreComponent);
  const kind = dc?.datastoreKind;
  if (!dc || !kind) return '';
  let hosts: string;
  try {
    const names = (await new HostStore(dc.datastore).list()).map((h) => h.host).sort();
    hosts = `${names.length} host${names.length === 1 ? '' : 's'} registered there (${names.join(', ')})`;
  } catch (e) {
    hosts = `could not list the hosts registered there: ${(e as Error).message}`;
  }
  log.info({ datastore: kind.kind }, `datastore: ${kind.description}; ${hosts}`);
  return `${DATASTORE_LINE} ${kind.description}\n${capital(hosts)}\n`;
}

function capital(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/**
 * --detach: the node's own report from its log (written after its start,
 * from `offset` on), waited for a few seconds; '' when it did not come.
 */
export async function datastoreReportFromLog(logFile: string, offset: number, waitMs = 10000): Promise<string> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    let text = '';
    try {
      const fd = fs.openSync(logFile, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const buf = Buffer.alloc(Math.max(0, size - offset));
        fs.readSync(fd, buf, 0, buf.length, offset);
        text = buf.toString('utf8');
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      /* not there yet */
    }
    const lines = text.split('\n');
    const i = lines.findIndex((l) => l.startsWith(DATASTORE_LINE));
    if (i >= 0 && lines.length > i + 2) return `${lines[i]}\n${lines[i + 1]}\n`;
    if (Date.now() > deadline) return '';
    await new Promise((r) => setTimeout(r, 100));
  }
}
