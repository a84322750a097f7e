import type { Logger } from 'pino';
import { isLoopbackHttp, ResolvedEndpoints } from './endpoints';
import { EmbeddedEtcd } from './embedded';
import { probeEtcd, ProbeResult } from './probe';

/**
 * When the node may start its own etcd member:
 * - 'auto' (default): only when no endpoint was configured, i.e. 127.0.0.1:2379;
 * - 'on': also on a configured endpoint, if it is one loopback http URL
 *   (a second node on one machine, tests on a private port);
 * - 'off': never; the node waits for the configured etcd like any client.
 * A configured remote cluster that is down is never replaced by a local
 * member: that would split the data silently.
 */
export type EmbeddedMode = 'auto' | 'on' | 'off';

export type EtcdPlan =
  | { action: 'use'; reason: string }
  | { action: 'embed'; clientUrl: string; reason: string }
  | { action: 'refuse'; reason: string };

/** Pure decision: what to do given the endpoints, the mode and what answered at the first endpoint. */
export function planEtcd(resolved: ResolvedEndpoints, mode: EmbeddedMode, probe: ProbeResult | undefined): EtcdPlan {
  const list = resolved.endpoints.join(', ');
  const mayEmbed = mode === 'on' || (mode === 'auto' && resolved.source === 'default');
  if (!mayEmbed) return { action: 'use', reason: `using etcd at ${list} (from ${resolved.source})` };
  const single = resolved.endpoints.length === 1 ? resolved.endpoints[0]! : undefined;
  if (!single || !isLoopbackHttp(single)) {
    return { action: 'refuse', reason: `--embedded-etcd needs one loopback http endpoint to listen on; got ${list}` };
  }
  if (!probe || probe.kind === 'etcd') {
    const version = probe?.kind === 'etcd' ? ` (etcd ${probe.version})` : '';
    return { action: 'use', reason: `using etcd at ${single}${version}` };
  }
  if (probe.kind === 'other') {
    return { action: 'refuse', reason: `cannot use or start etcd at ${single}: something else listens there (${probe.detail})` };
  }
  return { action: 'embed', clientUrl: single, reason: `no etcd answers at ${single}: starting an embedded etcd member` };
}

/**
 * Finds etcd for the node, starting the embedded member when the plan says
 * so. Returns the member (the caller stops it when the node stops), if any.
 */
export async function findOrStartEtcd(
  resolved: ResolvedEndpoints,
  mode: EmbeddedMode,
  stateDir: string,
  log: Logger,
): Promise<EmbeddedEtcd | undefined> {
  const mayProbe = mode === 'on' || (mode === 'auto' && resolved.source === 'default');
  // A member orphaned by a killed node would answer the probe and then live
  // on unowned: stop it first, so the plan starts one this node owns.
  const stopped = mayProbe ? await EmbeddedEtcd.stopLeftover(stateDir, log) : undefined;
  const single = mayProbe && resolved.endpoints.length === 1 ? resolved.endpoints[0]! : undefined;
  const probe = single ? await (stopped ? probeAfterStop(single) : probeEtcd(single, 1500)) : undefined;
  const plan = planEtcd(resolved, mode, probe);
  if (plan.action === 'refuse') throw new Error(plan.reason);
  log.info({ endpoints: resolved.endpoints, source: resolved.source }, plan.reason);
  if (plan.action === 'use') return undefined;
  const member = new EmbeddedEtcd({ clientUrl: plan.clientUrl, stateDir, log });
  await member.start();
  return member;
}

/**
 * A member just killed may still hold or reset connections on its port for a
 * moment: probe until the port is free (or 10 s pass) rather than mistake it
 * for "something else listens there".
 */
async function probeAfterStop(endpoint: string): Promise<ProbeResult> {
  const deadline = Date.now() + 10000;
  for (;;) {
    const p = await probeEtcd(endpoint, 1500);
    if (p.kind === 'none' || Date.now() > deadline) return p;
    await new Promise((r) => setTimeout(r, 100));
  }
}
