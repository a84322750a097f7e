import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { DEFAULT_ETCD_ENDPOINT, ResolvedEndpoints } from './endpoints';
import { EmbeddedEtcd, embeddedClientUrl } from './embedded';
import { probeEtcd, ProbeResult } from './probe';

/**
 * When the node may start its own etcd member (on unix sockets in its state
 * directory, see embedded.ts):
 * - 'auto' (default): when no endpoint was configured and either this state
 *   directory already holds the member's data or nothing answers on
 *   127.0.0.1:2379 (where a 2015-style local etcd would listen); also when
 *   the configured endpoint is the member's own socket;
 * - 'on': always (`--embedded-etcd`); a configured endpoint other than the
 *   member's socket is refused;
 * - 'off': never; the node waits for the configured etcd like any client.
 * A configured remote cluster that is down is never replaced by a local
 * member: that would split the data silently.
 */
export type EmbeddedMode = 'auto' | 'on' | 'off';

export type EtcdPlan =
  | { action: 'use'; endpoints: string[]; reason: string }
  | { action: 'embed'; reason: string }
  | { action: 'refuse'; reason: string };

/** What the plan looks at, besides the configuration. */
export interface EtcdFacts {
  /** The member's client URL for this state directory (unix:///.../etcd.sock:2379). */
  embeddedUrl: string;
  /** This state directory already holds the member's data (it ran here before). */
  embeddedData: boolean;
  /** What answers on 127.0.0.1:2379 (asked only when it matters). */
  probe?: ProbeResult;
}

/** Whether planEtcd needs the probe of 127.0.0.1:2379 for this configuration. */
export function needsProbe(resolved: ResolvedEndpoints, mode: EmbeddedMode, embeddedData: boolean): boolean {
  return mode === 'auto' && resolved.source === 'default' && !embeddedData;
}

/** Pure decision: use the configured etcd, start the member, or refuse. */
export function planEtcd(resolved: ResolvedEndpoints, mode: EmbeddedMode, facts: EtcdFacts): EtcdPlan {
  const list = resolved.endpoints.join(', ');
  const isDefault = resolved.source === 'default';
  const ownSocket = resolved.endpoints.length === 1 && resolved.endpoints[0] === facts.embeddedUrl;
  const embed: EtcdPlan = { action: 'embed', reason: `starting the embedded etcd member on ${facts.embeddedUrl}` };
  if (mode === 'off') return { action: 'use', endpoints: resolved.endpoints, reason: `using etcd at ${list} (from ${resolved.source})` };
  if (mode === 'on') {
    if (isDefault || ownSocket) return embed;
    return {
      action: 'refuse',
      reason: `--embedded-etcd runs this host's own member on ${facts.embeddedUrl}; it cannot also use ${list} (from ${resolved.source}): drop one of them`,
    };
  }
  if (ownSocket) return embed;
  if (!isDefault) return { action: 'use', endpoints: resolved.endpoints, reason: `using etcd at ${list} (from ${resolved.source})` };
  if (facts.embeddedData) return { action: 'embed', reason: `${embed.reason} (its data is in this state directory)` };
  const probe = facts.probe;
  if (probe?.kind === 'etcd') {
    return { action: 'use', endpoints: [DEFAULT_ETCD_ENDPOINT], reason: `using etcd at ${DEFAULT_ETCD_ENDPOINT} (etcd ${probe.version})` };
  }
  if (probe?.kind === 'other') {
    return { action: 'refuse', reason: `cannot use etcd at ${DEFAULT_ETCD_ENDPOINT}: something else listens there (${probe.detail}); configure --etcd-endpoints, or --embedded-etcd` };
  }
  return { action: 'embed', reason: `no etcd answers at ${DEFAULT_ETCD_ENDPOINT}: ${embed.reason}` };
}

export interface FoundEtcd {
  /** The client URLs the node uses. */
  endpoints: string[];
  /** The member this node started (the caller stops it when the node stops), if any. */
  member?: EmbeddedEtcd;
}

/** Finds etcd for the node, starting the embedded member when the plan says so. */
export async function findOrStartEtcd(resolved: ResolvedEndpoints, mode: EmbeddedMode, stateDir: string, log: Logger): Promise<FoundEtcd> {
  const embeddedUrl = embeddedClientUrl(stateDir);
  const embeddedData = fs.existsSync(path.join(stateDir, 'etcd', 'member'));
  const probe = needsProbe(resolved, mode, embeddedData) ? await probeEtcd(DEFAULT_ETCD_ENDPOINT, 1500) : undefined;
  const plan = planEtcd(resolved, mode, { embeddedUrl, embeddedData, probe });
  if (plan.action === 'refuse') throw new Error(plan.reason);
  log.info({ endpoints: resolved.endpoints, source: resolved.source }, plan.reason);
  if (plan.action === 'use') return { endpoints: plan.endpoints };
  const member = new EmbeddedEtcd({ stateDir, log });
  await member.start();
  return { endpoints: [member.clientUrl], member };
}
