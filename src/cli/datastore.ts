import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { Datastore, DatastoreError, DatastoreTls } from '../datastore';
import { EndpointError, resolveEndpoints, ResolvedEndpoints } from '../etcd/endpoints';
import { EMBEDDED_CLIENT_SOCKET, embeddedClientUrl } from '../etcd/embedded';
import { checkTlsEndpoints, EtcdTlsError, EtcdTlsFiles, hasTls, loadEtcdTls, resolveEtcdTls } from '../etcd/tls';
import { IpamError } from '../ipam/types';
import { DEFAULT_STATE_DIR } from '../node/state-dir';
import { startProgress } from './progress';
import { capitalise, CliError, etcdUnavailableMessage, UsageError } from './errors';

/**
 * Per-call etcd deadline for CLI commands: an unreachable etcd fails well
 * inside 3 s, process start-up included, even on a busy machine.
 */
export const CLI_ETCD_TIMEOUT_MS = 1500;

/** The global etcd options of every command (before or after the subcommand). */
export function addEtcdOptions(program: Command): Command {
  return program
    .option(
      '--etcd-endpoints <urls>',
      'etcd client URLs, comma separated: http://, https:// or unix:///path (default: $ETCD_ENDPOINTS, $ETCD_AUTHORITY, ' +
        'then this host\'s embedded member if it runs, then http://127.0.0.1:2379)',
    )
    .option('--etcd-ca-file <FILE>', 'CA certificate(s) that the https:// etcd servers\' certificates must chain to (default: $ETCD_CA_CERT_FILE, else the system\'s CAs)')
    .option('--etcd-cert-file <FILE>', 'client certificate for etcd over https:// (default: $ETCD_CERT_FILE)')
    .option('--etcd-key-file <FILE>', 'the client certificate\'s private key (default: $ETCD_KEY_FILE)');
}

/** What the flags and the environment say, before any default: the node decides the default itself (discovery.ts). */
export function etcdConfigFor(cmd: Command, env: NodeJS.ProcessEnv = process.env): { endpoints: ResolvedEndpoints; tls: EtcdTlsFiles } {
  const o = cmd.optsWithGlobals();
  try {
    return { endpoints: resolveEndpoints(o.etcdEndpoints as string | undefined, env), tls: resolveEtcdTls(o, env) };
  } catch (e) {
    // A malformed endpoint is a usage error (2); a TLS file that cannot be read is a failure (1).
    if (e instanceof EndpointError) throw new UsageError(e.message);
    if (e instanceof EtcdTlsError) throw new CliError(e.message);
    throw e;
  }
}

/**
 * The etcd endpoints for this invocation: --etcd-endpoints, ETCD_ENDPOINTS,
 * ETCD_AUTHORITY; with none of them, this host's embedded member when its
 * socket exists in the state directory (the command's --state-dir, as
 * `status`, `diags` and `node stop` have, else /var/lib/calico; root only:
 * the directory is 0700), else http://127.0.0.1:2379.
 */
export function endpointsFor(cmd: Command, env: NodeJS.ProcessEnv = process.env): ResolvedEndpoints {
  const { endpoints } = etcdConfigFor(cmd, env);
  if (endpoints.source !== 'default') return endpoints;
  const stateDir = (cmd.optsWithGlobals().stateDir as string | undefined) ?? DEFAULT_STATE_DIR;
  return embeddedMemberOf(stateDir) ?? endpoints;
}

function embeddedMemberOf(stateDir: string): ResolvedEndpoints | undefined {
  const member: ResolvedEndpoints = { endpoints: [embeddedClientUrl(stateDir)], source: 'embedded' };
  try {
    if (fs.statSync(path.join(stateDir, EMBEDDED_CLIENT_SOCKET)).isSocket()) return member;
  } catch (e) {
    // Not root: the member is there but not ours to use; say so rather than try 127.0.0.1:2379.
    if ((e as NodeJS.ErrnoException).code === 'EACCES') return member;
  }
  return undefined;
}

/** The TLS material for this invocation, read and checked (errors name the file); undefined without TLS files. */
export function tlsFor(cmd: Command, endpoints: ResolvedEndpoints, env: NodeJS.ProcessEnv = process.env): DatastoreTls | undefined {
  const { tls } = etcdConfigFor(cmd, env);
  try {
    checkTlsEndpoints(endpoints.endpoints, tls, endpoints.source);
    return hasTls(tls) ? loadEtcdTls(tls) : undefined;
  } catch (e) {
    if (e instanceof EtcdTlsError) throw new CliError(e.message);
    throw e;
  }
}

/** A datastore client for this invocation (endpoints and TLS from flags/environment); the caller closes it. */
export function datastoreFor(cmd: Command, timeoutMs = CLI_ETCD_TIMEOUT_MS): { ds: Datastore; resolved: ResolvedEndpoints } {
  const resolved = endpointsFor(cmd);
  const tls = tlsFor(cmd, resolved);
  return { ds: new Datastore({ endpoints: resolved.endpoints, timeoutMs, tls }), resolved };
}

/**
 * Runs one command's datastore work: connects, runs fn, closes; datastore
 * errors become messages for a person (no stack), naming etcd's endpoints
 * when it cannot be reached.
 */
export async function withDatastore<T>(cmd: Command, fn: (ds: Datastore) => Promise<T>, what?: string): Promise<T> {
  const { ds, resolved } = datastoreFor(cmd);
  const { endpoints, source } = resolved;
  // On a terminal, a spinner says what we wait for when etcd is slow to answer.
  const progress = startProgress(what ?? `Waiting for etcd at ${endpoints.join(', ')}`);
  try {
    return await fn(ds);
  } catch (e) {
    throw datastoreErrorToCli(e, endpoints, hintFor(source));
  } finally {
    progress.stop();
    ds.close();
  }
}

function hintFor(source: ResolvedEndpoints['source']): string | undefined {
  if (source === 'default') return DEFAULT_ENDPOINT_HINT;
  if (source === 'embedded') return EMBEDDED_HINT;
  return undefined;
}

/** Said when the default endpoint is down: a new user has most likely not started a node yet. */
export const DEFAULT_ENDPOINT_HINT =
  'No etcd endpoint is configured: start `calicoctl node` on this host (it runs an embedded etcd member), ' +
  'or point --etcd-endpoints / ETCD_ENDPOINTS at your etcd cluster.';

/** Said when this host's embedded member does not answer (or is not ours). */
export const EMBEDDED_HINT =
  "This is this host's embedded etcd member (in the node's state directory): only root can reach it, and only while `calicoctl node` runs.";

export function datastoreErrorToCli(e: unknown, endpoints: string[], hint?: string): unknown {
  if (!(e instanceof DatastoreError || e instanceof IpamError)) return e;
  if (e instanceof DatastoreError && e.code === 'TLS') {
    // Not "is etcd running?": it is, and the certificates are what to fix.
    return new CliError(`Error accessing etcd at ${endpoints.join(', ')}: ${e.message.replace(/\s*\(endpoints tried: [^)]*\)/, '')}`);
  }
  if (e.code === 'UNAVAILABLE' || (e instanceof DatastoreError && e.code === 'FAILED')) {
    // The endpoints lead the message; drop the datastore's own copy of them.
    const detail = e.message
      .replace(/\s*\(endpoints tried: [^)]*\)/, '')
      // gRPC appends name-resolution notes that mean nothing to a user.
      .replace(/\.?\s*Resolution note:.*$/s, '');
    return new CliError(etcdUnavailableMessage(endpoints, detail) + (hint ? `\n${hint}` : ''));
  }
  return new CliError(capitalise(e.message));
}
