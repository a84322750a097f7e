// Where a container's start spends its time, as the node sees it: the
// proxy's reservation at create, each libnetwork call dockerd makes, the
// steps of Join (veth, etcd record, policy), and the time dockerd spends
// between them, up to dockerd's `start` event. One debug line per start
// ("container start trace", ms per phase) and, through `observe`, a
// histogram per phase on /metrics (calico_start_phase_seconds).
//
// The pieces arrive keyed by what each caller knows: the reservation by its
// handle, RequestAddress by its address, CreateEndpoint by address and
// endpoint id, Join by endpoint id, the start event by container id. The
// trace joins them through the address. Bounded: a start that never
// finishes is dropped after TRACE_TTL_MS, and at most MAX_OPEN are kept.
import type { Logger } from 'pino';
import type { Allocation, AllocateRequest, Ipam } from '../ipam/types';
import { RESERVATION_HANDLE_PREFIX } from '../names';

/**
 * The phases of one start, in the order they happen. `dockerd:` phases are
 * the time between two of our calls (dockerd's own work, and for the first
 * one the client's attach, wait and start requests through the proxy).
 */
export const START_PHASES = [
  'reserve', // create: IPAM allocation of the container's address (proxy)
  'name', // create: the container id recorded on its reservation (the create answers right after)
  'dockerd:create-to-request-address', // the CLI's attach/wait/start requests; dockerd's start up to IPAM
  'request-address', // IpamDriver.RequestAddress
  'dockerd:request-address-to-create-endpoint',
  'create-endpoint', // NetworkDriver.CreateEndpoint (veth creation starts, not awaited)
  'dockerd:create-endpoint-to-join',
  'join:veth', // Join waiting for the veth set up at CreateEndpoint
  'join:record', // the endpoint written to etcd
  'join:policy', // the endpoint's policy programmed (the kernel applier)
  'join', // NetworkDriver.Join as a whole
  'dockerd:join-to-start', // sandbox: interface moved and addressed, the process started
  'total', // reservation start to dockerd's start event
] as const;

export type StartPhase = (typeof START_PHASES)[number];

/** A start's marks: when each of our calls began and ended (ms on one monotonic clock). */
export interface StartMarks {
  reserve?: Span;
  name?: Span;
  requestAddress?: Span;
  createEndpoint?: Span;
  join?: Span;
  joinSteps: Partial<Record<'veth' | 'record' | 'policy', number>>;
  started?: number;
}

export interface Span {
  start: number;
  end: number;
}

/**
 * Pure: the phases of a start from its marks, in ms. A phase whose marks
 * are missing (a container started without the proxy has no reservation)
 * is left out, and so is a gap whose two ends are not both known.
 */
export function startPhases(m: StartMarks): Partial<Record<StartPhase, number>> {
  const out: Partial<Record<StartPhase, number>> = {};
  const len = (s?: Span) => (s ? s.end - s.start : undefined);
  const gap = (a?: Span, b?: Span) => (a && b ? b.start - a.end : undefined);
  const put = (p: StartPhase, v: number | undefined) => {
    if (v !== undefined && Number.isFinite(v)) out[p] = Math.max(0, v);
  };
  put('reserve', len(m.reserve));
  put('name', len(m.name));
  put('dockerd:create-to-request-address', gap(m.name, m.requestAddress));
  put('request-address', len(m.requestAddress));
  put('dockerd:request-address-to-create-endpoint', gap(m.requestAddress, m.createEndpoint));
  put('create-endpoint', len(m.createEndpoint));
  put('dockerd:create-endpoint-to-join', gap(m.createEndpoint, m.join));
  put('join:veth', m.joinSteps.veth);
  put('join:record', m.joinSteps.record);
  put('join:policy', m.joinSteps.policy);
  put('join', len(m.join));
  if (m.join && m.started !== undefined) put('dockerd:join-to-start', m.started - m.join.end);
  const first = m.reserve ?? m.requestAddress ?? m.createEndpoint;
  if (first && m.started !== undefined) put('total', m.started - first.start);
  return out;
}

/** A start not finished this long after its first mark is dropped (it failed, or dockerd's event was missed). */
export const TRACE_TTL_MS = 60000;
const MAX_OPEN = 2000;

export interface StartTraceOptions {
  log: Logger;
  /** One finished phase (the node's histogram); absent: logged only. */
  observe?: (phase: StartPhase, seconds: number) => void;
  /** The clock (ms); performance.now by default. */
  now?: () => number;
}

interface Open {
  marks: StartMarks;
  first: number;
  address: string;
  containerId?: string;
}

export class StartTrace {
  private readonly byAddress = new Map<string, Open>();
  private readonly addressOfEndpoint = new Map<string, string>();
  private readonly addressOfContainer = new Map<string, string>();
  private readonly addressOfHandle = new Map<string, string>();

  constructor(private readonly o: StartTraceOptions) {}

  now(): number {
    return this.o.now ? this.o.now() : performance.now();
  }

  /** Create: the proxy reserved `addresses` for a new container under `handle`. */
  reserved(handle: string, addresses: string[], start: number): void {
    const address = addresses[0];
    if (!address) return;
    this.open(address).marks.reserve = { start, end: this.now() };
    this.addressOfHandle.set(handle, address);
  }

  /** Create: the reservation names its container (the create is answered next). */
  named(handle: string, containerId: string, start: number): void {
    const address = this.addressOfHandle.get(handle);
    this.addressOfHandle.delete(handle);
    const t = address && this.byAddress.get(address);
    if (!t) return;
    t.containerId = containerId;
    this.addressOfContainer.set(containerId, t.address);
    t.marks.name = { start, end: this.now() };
  }

  requestAddress(address: string, start: number): void {
    this.open(address).marks.requestAddress = { start, end: this.now() };
  }

  createEndpoint(endpointId: string, address: string, start: number): void {
    this.addressOfEndpoint.set(endpointId, address);
    this.open(address).marks.createEndpoint = { start, end: this.now() };
  }

  /** A step inside Join (or a record outside Join: then there is no open start and nothing happens). */
  joinStep(endpointId: string, step: 'veth' | 'record' | 'policy', ms: number): void {
    const t = this.ofEndpoint(endpointId);
    if (t) t.marks.joinSteps[step] = (t.marks.joinSteps[step] ?? 0) + ms;
  }

  joined(endpointId: string, start: number): void {
    const t = this.ofEndpoint(endpointId);
    if (t) t.marks.join = { start, end: this.now() };
  }

  /** dockerd's start event: the start is over; its phases are logged and observed. */
  started(containerId: string): void {
    let address = this.addressOfContainer.get(containerId);
    if (!address) {
      // Started without the proxy (no reservation): found through Join, if dockerd named it.
      for (const [a, t] of this.byAddress) if (t.containerId === containerId) address = a;
    }
    const t = address && this.byAddress.get(address);
    if (!t || !t.marks.join) return;
    t.marks.started = this.now();
    this.close(t);
    const phases = startPhases(t.marks);
    const ms: Record<string, number> = {};
    for (const p of START_PHASES) {
      const v = phases[p];
      if (v === undefined) continue;
      ms[p] = Math.round(v * 10) / 10;
      this.o.observe?.(p, v / 1000);
    }
    this.o.log.debug({ container: containerId, address: t.address, ms }, 'container start trace');
  }

  /** Names the container of an endpoint (Join found it): lets `started` end a start the proxy did not create. */
  endpointOf(endpointId: string, containerId: string): void {
    const t = this.ofEndpoint(endpointId);
    if (t && !t.containerId) {
      t.containerId = containerId;
      this.addressOfContainer.set(containerId, t.address);
    }
  }

  /** Open starts (tests). */
  get size(): number {
    return this.byAddress.size;
  }

  private ofEndpoint(endpointId: string): Open | undefined {
    const a = this.addressOfEndpoint.get(endpointId);
    return a === undefined ? undefined : this.byAddress.get(a);
  }

  private open(address: string): Open {
    let t = this.byAddress.get(address);
    const now = this.now();
    if (t && now - t.first > TRACE_TTL_MS) {
      this.close(t);
      t = undefined;
    }
    if (!t) {
      this.expire(now);
      t = { marks: { joinSteps: {} }, first: now, address };
      this.byAddress.set(address, t);
    }
    return t;
  }

  private close(t: Open): void {
    this.byAddress.delete(t.address);
    if (t.containerId) this.addressOfContainer.delete(t.containerId);
    for (const [e, a] of this.addressOfEndpoint) if (a === t.address) this.addressOfEndpoint.delete(e);
  }

  /** Drops starts past their TTL (oldest first: insertion order), and the oldest beyond MAX_OPEN. */
  private expire(now: number): void {
    for (const t of this.byAddress.values()) {
      if (now - t.first <= TRACE_TTL_MS && this.byAddress.size < MAX_OPEN) break;
      this.close(t);
    }
    for (const [h, a] of this.addressOfHandle) if (!this.byAddress.has(a)) this.addressOfHandle.delete(h);
  }
}

/**
 * The IPAM the create interceptor is given: the same IPAM, with its
 * reservation (allocate under a "resv-" handle) and the naming of its
 * container (setAttrs with `container`) reported to the trace.
 */
export function tracedReservations(ipam: Ipam, trace: StartTrace): Ipam {
  const allocate = async (req: AllocateRequest): Promise<Allocation[]> => {
    const start = trace.now();
    const allocs = await ipam.allocate(req);
    if (req.handle.startsWith(RESERVATION_HANDLE_PREFIX)) trace.reserved(req.handle, allocs.map((a) => a.address), start);
    return allocs;
  };
  const setAttrs = async (handle: string, attrs: Record<string, string>): Promise<void> => {
    const start = trace.now();
    await ipam.setAttrs(handle, attrs);
    if (attrs.container && handle.startsWith(RESERVATION_HANDLE_PREFIX)) trace.named(handle, attrs.container, start);
  };
  return new Proxy(ipam, {
    get(target, prop) {
      if (prop === 'allocate') return allocate;
      if (prop === 'setAttrs') return setAttrs;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
