import type { Command } from 'commander';
import { Datastore, DatastoreError } from '../datastore';
import { EndpointError, resolveEndpoints, ResolvedEndpoints } from '../etcd/endpoints';
import { IpamError } from '../ipam/types';
import { startProgress } from './progress';
import { capitalise, CliError, etcdUnavailableMessage } from './errors';

/**
 * Per-call etcd deadline for CLI commands: an unreachable etcd fails well
 * inside 3 s, process start-up included, even on a busy machine.
 */
export const CLI_ETCD_TIMEOUT_MS = 1500;

/** The etcd endpoints for this invocation: --etcd-endpoints, ETCD_ENDPOINTS, ETCD_AUTHORITY, default. */
export function endpointsFor(cmd: Command, env: NodeJS.ProcessEnv = process.env): ResolvedEndpoints {
  const flag = cmd.optsWithGlobals().etcdEndpoints as string | undefined;
  try {
    return resolveEndpoints(flag, env);
  } catch (e) {
    if (e instanceof EndpointError) throw new CliError(e.message);
    throw e;
  }
}

/**
 * Runs one command's datastore work: connects, runs fn, closes; datastore
 * errors become messages for a person (no stack), naming etcd's endpoints
 * when it cannot be reached.
 */
export async function withDatastore<T>(cmd: Command, fn: (ds: Datastore) => Promise<T>, what?: string): Promise<T> {
  const { endpoints, source } = endpointsFor(cmd);
  const ds = new Datastore({ endpoints, timeoutMs: CLI_ETCD_TIMEOUT_MS });
  // On a terminal, a spinner says what we wait for when etcd is slow to answer.
  const progress = startProgress(what ?? `Waiting for etcd at ${endpoints.join(', ')}`);
  try {
    return await fn(ds);
  } catch (e) {
    throw datastoreErrorToCli(e, endpoints, source === 'default' ? DEFAULT_ENDPOINT_HINT : undefined);
  } finally {
    progress.stop();
    ds.close();
  }
}

/** Said when the default endpoint is down: a new user has most likely not started a node yet. */
export const DEFAULT_ENDPOINT_HINT =
  'No etcd endpoint is configured: start `calicoctl node` on this host (it runs an embedded etcd member), ' +
  'or point --etcd-endpoints / ETCD_ENDPOINTS at your etcd cluster.';

export function datastoreErrorToCli(e: unknown, endpoints: string[], hint?: string): unknown {
  if (!(e instanceof DatastoreError || e instanceof IpamError)) return e;
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
