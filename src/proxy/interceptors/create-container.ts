// POST /containers/create: a container that asks for CALICO_IP gets its
// address reserved here and is moved onto the host's `calico` Docker network,
// whose driver plumbs the veth before the process runs (see DESIGN.md, "The
// create/start flow"). Every reservation has its undo next to it: a create
// that dockerd refuses, or never answers, releases what was reserved.
import { randomUUID } from 'node:crypto';
import { RESERVATION_HANDLE_PREFIX, calicoNetworkName } from '../../names';
import type { Interceptor, InterceptContext, InterceptorResponse, RequestDecision, UpstreamOutcome } from '../interceptor';
import { Ipam, IpamError } from '../../ipam/types';
import { RequestRefused, checkNetworkMode, parseCalicoEnv, withNetworkFamilies } from './calico-request';
import { planRewrite, readCreateBody, renderRewrite, type CreateView, type RewritePlan } from './create-body';
import type { CalicoNetworkState } from './network-check';
import { refusalForIpamError } from './ipam-refusal';
import type { InflightHandles } from '../../endpoints/inflight';
import type { Reservation, ReservationBook } from '../../endpoints/reservations';

export interface CreateContainerDeps {
  /** The process's one IPAM. */
  ipam: Ipam;
  /** This node's hostname in the datastore. */
  host: string;
  /** Handles being created right now; the reconciler never collects these. */
  inflight: InflightHandles;
  /** Where a created container's reservation is noted: the plugin's Join names the container from it. */
  reservations: ReservationBook;
  /**
   * Says why containers cannot join the calico network right now (the
   * network is missing, the node's plugin is not serving), or which address
   * families it carries.
   */
  network(): Promise<CalicoNetworkState>;
  /** Creates the profiles CALICO_PROFILE names that do not exist yet, with the 2015 defaults; the names it created. */
  ensureProfiles?(names: string[]): Promise<string[] | void>;
  /** How long IPAM may take before the client is told the datastore is not answering (default 3 s). */
  ipamTimeoutMs?: number;
  /** Where the datastore is, for that message (e.g. "etcd at http://127.0.0.1:2379"). */
  datastoreName?: string;
}

/** What the create decided on the user's behalf, for the answer's Warnings (the docker CLI prints each as `WARNING: …`). */
type CreateState = Reservation & { warnings: string[] };

const CREATE_PATH = '/containers/create';

export class CreateContainerInterceptor implements Interceptor {
  readonly name = 'create-container';

  constructor(private readonly deps: CreateContainerDeps) {}

  matches(method: string, path: string): boolean {
    return method === 'POST' && path === CREATE_PATH;
  }

  async onRequest(ctx: InterceptContext, raw: Buffer): Promise<RequestDecision> {
    // Ours or not is decided on the body as dockerd will read it (create-body.ts),
    // never on its bytes; not ours: the original bytes go on untouched.
    let body: CreateView | undefined;
    let wanted;
    let plan: RewritePlan;
    try {
      body = readCreateBody(raw);
      wanted = body && parseCalicoEnv(body.env);
      // Not ours: neither is dockerd's answer (onResponse has nothing to undo), so it streams back untouched.
      if (!body || !wanted) return { action: 'pass', untouched: true };
      checkNetworkMode(body.networkMode);
      // Every refusal the rewrite could meet, before anything is reserved.
      plan = planRewrite(body);
    } catch (e) {
      if (e instanceof RequestRefused) return { action: 'reply', status: e.status, message: e.message };
      throw e;
    }

    const net = await this.deps.network();
    if (net.problem !== undefined) return { action: 'reply', status: 503, message: net.problem };
    // Docker asks for an address of every family the network carries; one
    // the client left out is reserved here too, so it belongs to the
    // container like the other: same address after a restart, released with it.
    wanted = withNetworkFamilies(wanted, net.ipv6);
    // Said in Warnings: what was decided for the user that they may not expect (not the
    // second family of a dual-stack network: that is every container there, and inspect shows it).
    const warnings: string[] = [];
    const mode = body.networkMode;
    if (mode && !['default', 'bridge', calicoNetworkName()].includes(mode)) {
      warnings.push(`network ${mode} replaced by the calico network (CALICO_IP): its endpoint settings (aliases, links) carried over`);
    }
    if (wanted.profiles.length && this.deps.ensureProfiles) {
      // As 2015's adapter did: a profile named at create that does not exist is made with the defaults.
      try {
        for (const p of (await this.deps.ensureProfiles(wanted.profiles)) ?? []) {
          warnings.push(`profile ${p} did not exist: created with the default rules (members only)`);
        }
      } catch (e) {
        const r = refusalForIpamError(e, `creating profile(s) ${wanted.profiles.join(', ')}`);
        return { action: 'reply', status: r.status === 500 ? 503 : r.status, message: r.message };
      }
    }

    const handle = RESERVATION_HANDLE_PREFIX + randomUUID();
    const name = ctx.query.get('name');
    const what = `reserving ${describe(wanted)} for container${name ? ` ${name}` : ''}`;
    this.deps.inflight.add(handle);
    let allocations;
    try {
      allocations = await this.allocateWithDeadline(handle, wanted, name ?? undefined);
    } catch (e) {
      this.deps.inflight.delete(handle);
      const r = refusalForIpamError(e, what);
      ctx.log.info({ handle, status: r.status }, r.message);
      return { action: 'reply', status: r.status, message: r.message };
    }
    const ipv4 = allocations.find((a) => a.family === 4)?.address;
    const ipv6 = allocations.find((a) => a.family === 6)?.address;
    let forwarded: Buffer;
    try {
      forwarded = renderRewrite(plan, { handle, ipv4, ipv6, profiles: wanted.profiles });
    } catch (e) {
      // The undo of the reservation above: no create goes to dockerd, so onResponse never runs.
      await this.releaseQuietly(ctx, handle);
      this.deps.inflight.delete(handle);
      throw e;
    }
    ctx.log.debug({ handle, ipv4, ipv6 }, 'create rewritten onto the calico network');
    const state: CreateState = { handle, ipv4, ipv6, profiles: wanted.profiles, warnings };
    return { action: 'forward', body: forwarded, state };
  }

  async onResponse(ctx: InterceptContext, outcome: UpstreamOutcome, state: unknown): Promise<InterceptorResponse | void> {
    if (!isCreateState(state)) return;
    const { handle } = state;
    try {
      if ('status' in outcome && outcome.status === 201) {
        const id = containerId(outcome.body);
        if (id) {
          this.deps.reservations.set(id, { handle, ipv4: state.ipv4, ipv6: state.ipv6, profiles: state.profiles });
          // Awaited: the id on the reservation is what proves ownership of the
          // address (IPAM driver, reconciler), recorded before the client can start it.
          await this.deps.ipam.setAttrs(handle, { container: id }).catch((e) => {
            ctx.log.warn({ handle, container: id, err: e }, 'recording the container id on its reservation failed; the reconciler adopts it');
          });
        }
        return withWarnings(outcome.body, state.warnings);
      }
      // dockerd refused the create (no such image: the CLI pulls and creates
      // again, with a new reservation) or could not be reached: one
      // container, one address.
      await this.releaseQuietly(ctx, handle);
    } finally {
      this.deps.inflight.delete(handle);
    }
  }

  private async releaseQuietly(ctx: InterceptContext, handle: string): Promise<void> {
    try {
      await this.deps.ipam.releaseByHandle(handle);
    } catch (e) {
      // Without a container and past its grace period the reconciler collects it.
      ctx.log.warn({ handle, err: e }, 'releasing the reservation of a failed create failed; the reconciler will collect it');
    }
  }

  /**
   * IPAM answers within its own bound when etcd is down; this deadline only
   * covers a datastore that accepts connections but never answers. A late
   * allocation is released as soon as it lands.
   */
  private allocateWithDeadline(handle: string, wanted: { ipv4?: string; ipv6?: string; profiles?: string[] }, name?: string) {
    const ms = this.deps.ipamTimeoutMs ?? 3000;
    const attrs: Record<string, string> = { source: 'proxy' };
    if (name) attrs.name = name;
    // Join names the container's profiles from here after a node restart (the in-memory book is gone).
    if (wanted.profiles?.length) attrs.profiles = wanted.profiles.join(',');
    const p = this.deps.ipam.allocate({ handle, host: this.deps.host, ipv4: wanted.ipv4, ipv6: wanted.ipv6, attrs });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        p.then(() => this.deps.ipam.releaseByHandle(handle)).catch(() => undefined);
        const where = this.deps.datastoreName ?? 'the datastore';
        reject(new IpamError('UNAVAILABLE', `${where} did not answer within ${ms} ms; is etcd running?`));
      }, ms);
    });
    return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
  }
}

function describe(w: { ipv4?: string; ipv6?: string }): string {
  const parts: string[] = [];
  if (w.ipv4) parts.push(w.ipv4 === 'auto' ? 'an IPv4 address' : w.ipv4);
  if (w.ipv6) parts.push(w.ipv6 === 'auto' ? 'an IPv6 address' : w.ipv6);
  return parts.join(' and ');
}

function isCreateState(s: unknown): s is CreateState {
  return typeof s === 'object' && s !== null && typeof (s as CreateState).handle === 'string';
}

/** dockerd's create answer with `warnings` added to its Warnings; undefined (passed on as it came) when there are none. */
function withWarnings(body: Buffer, warnings: string[]): InterceptorResponse | undefined {
  if (!warnings.length) return undefined;
  try {
    const answer = JSON.parse(body.toString('utf8')) as { Warnings?: unknown };
    answer.Warnings = [...(Array.isArray(answer.Warnings) ? answer.Warnings : []), ...warnings];
    return { status: 201, body: Buffer.from(JSON.stringify(answer) + '\n'), headers: { 'Content-Type': 'application/json' } };
  } catch {
    return undefined;
  }
}

function containerId(body: Buffer): string | undefined {
  try {
    const id = (JSON.parse(body.toString('utf8')) as { Id?: unknown }).Id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}
