// The node's metrics: one prom-client Registry per node process (made with
// the node context), and the narrow recorders each component is handed
// through its constructor options. A component without a recorder records
// nothing (unit tests, the CLI's one-shot uses).
import type net from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { PATH_CLASSES, PathClass, pathClass } from './path-class';

/** What the Docker API proxy records. Every method is cheap enough for the pass-through path. */
export interface ProxyMetrics {
  /** One finished request (spliced or intercepted): its path class and status (0: no answer). */
  request(url: string, status: number): void;
  /** One intercepted call's time, from its head to its answer. */
  intercepted(interceptor: string, seconds: number): void;
  /** A raw connection to dockerd: its bytes are counted when /metrics is read (nothing per chunk). */
  dockerSocket(s: net.Socket): void;
  /** A call turned into a raw stream (+1), or such a stream ended (-1). */
  hijacked(delta: 1 | -1): void;
}

export type IpamOp = 'allocate' | 'release';

export interface IpamMetrics {
  /** A finished IPAM operation: addresses it allocated or freed, or the error code it failed with. */
  done(op: IpamOp, seconds: number, addresses: number, errorCode?: string): void;
}

export interface PluginMetrics {
  /** One libnetwork call: method (Plugin.Activate, NetworkDriver.Join...) and how it ended. */
  call(method: string, result: 'ok' | 'invalid' | 'error'): void;
}

/** One phase of a container's start (src/endpoints/start-trace.ts names them). */
export type StartPhaseObserver = (phase: string, seconds: number) => void;

export interface ReconcilerMetrics {
  sweep(result: 'ok' | 'skipped' | 'failed'): void;
  /** Addresses the reconciler released, on a destroy event or in a sweep. */
  released(trigger: 'event' | 'sweep', addresses: number): void;
}

/** What Datastore.call reports: every etcd call's time, and its error code when it failed (UNAVAILABLE, FAILED...). */
export type EtcdCallObserver = (seconds: number, errorCode?: string) => void;

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * The registry and every metric of the node. Later components (policy, BGP)
 * register their own metrics on `registry` (a Gauge with `registers:
 * [metrics.registry]`, or `metrics.gauge(...)`), named calico_<component>_*.
 */
export class NodeMetrics {
  /** Open to every component: register more metrics here; /metrics serves all of it. */
  readonly registry = new Registry();
  readonly proxy: ProxyMetrics;
  readonly ipam: IpamMetrics;
  readonly plugin: PluginMetrics;
  readonly reconciler: ReconcilerMetrics;
  readonly etcd: EtcdCallObserver;
  readonly startPhase: StartPhaseObserver;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'calico_node_' });
    this.proxy = proxyMetrics(registers);

    const ipamSeconds = new Histogram({ name: 'calico_ipam_operation_seconds', help: 'IPAM operation latency', labelNames: ['op'], buckets: LATENCY_BUCKETS, registers });
    const allocations = new Counter({ name: 'calico_ipam_allocations_total', help: 'Addresses allocated', registers });
    const releases = new Counter({ name: 'calico_ipam_releases_total', help: 'Addresses released (freed; a release that found nothing counts 0)', registers });
    const ipamErrors = new Counter({ name: 'calico_ipam_errors_total', help: 'Failed IPAM operations by operation and IPAM error code', labelNames: ['op', 'code'], registers });
    this.ipam = {
      done(op, seconds, addresses, errorCode) {
        ipamSeconds.observe({ op }, seconds);
        if (errorCode !== undefined) ipamErrors.inc({ op, code: errorCode });
        else if (addresses) (op === 'allocate' ? allocations : releases).inc(addresses);
      },
    };

    const pluginCalls = new Counter({ name: 'calico_plugin_calls_total', help: 'libnetwork plugin calls by method and result', labelNames: ['method', 'result'], registers });
    this.plugin = { call: (method, result) => pluginCalls.inc({ method, result }) };

    const sweeps = new Counter({ name: 'calico_reconciler_sweeps_total', help: 'Reconciler sweeps by result', labelNames: ['result'], registers });
    const recReleases = new Counter({ name: 'calico_reconciler_released_addresses_total', help: 'Addresses the reconciler released, by trigger', labelNames: ['trigger'], registers });
    this.reconciler = {
      sweep: (result) => sweeps.inc({ result }),
      released: (trigger, n) => {
        if (n) recReleases.inc({ trigger }, n);
      },
    };

    const phaseSeconds = new Histogram({
      name: 'calico_start_phase_seconds',
      help: "A container start by phase: the proxy's reservation, each plugin call, Join's steps, and dockerd's time between them (docs/operator-guide.md)",
      labelNames: ['phase'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const phaseChildren = new Map<string, { observe(v: number): void }>();
    this.startPhase = (phase, seconds) => {
      let c = phaseChildren.get(phase);
      if (!c) phaseChildren.set(phase, (c = phaseSeconds.labels({ phase })));
      c.observe(seconds);
    };

    const etcdSeconds = new Histogram({ name: 'calico_etcd_call_seconds', help: 'etcd call latency (each under its deadline)', buckets: LATENCY_BUCKETS, registers });
    const etcdErrors = new Counter({ name: 'calico_etcd_errors_total', help: 'Failed etcd calls by kind', labelNames: ['kind'], registers });
    this.etcd = (seconds, code) => {
      etcdSeconds.observe(seconds);
      if (code !== undefined) etcdErrors.inc({ kind: code.toLowerCase() });
    };
  }

  /** A gauge on the node's registry whose value is read when /metrics is scraped (policy, BGP). */
  gauge(name: string, help: string, read: () => number): Gauge {
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** The Prometheus text exposition of everything registered. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * The proxy's hot path records plain numbers (no label objects per
 * request); they are copied into the prom-client metrics when /metrics is
 * read (collect()).
 */
function proxyMetrics(registers: Registry[]): ProxyMetrics {
  const counts = new Map<PathClass, Map<number, number>>(PATH_CLASSES.map((c) => [c, new Map()]));
  new Counter({
    name: 'calico_proxy_requests_total',
    help: 'Docker API requests through the proxy by path class and status (0: no answer)',
    labelNames: ['class', 'status'],
    registers,
    collect() {
      this.reset();
      for (const [cls, byStatus] of counts) for (const [status, n] of byStatus) this.inc({ class: cls, status: String(status) }, n);
    },
  });

  const icpSeconds = new Histogram({ name: 'calico_proxy_intercepted_seconds', help: 'Intercepted call latency by interceptor', labelNames: ['interceptor'], buckets: LATENCY_BUCKETS, registers });
  const icpChildren = new Map<string, { observe(v: number): void }>();

  const live = new Set<net.Socket>();
  const closed = { toDocker: 0, fromDocker: 0 };
  new Counter({
    name: 'calico_proxy_spliced_bytes_total',
    help: 'Bytes spliced between clients and dockerd, by direction',
    labelNames: ['direction'],
    registers,
    collect() {
      let to = closed.toDocker;
      let from = closed.fromDocker;
      for (const s of live) {
        to += s.bytesWritten;
        from += s.bytesRead;
      }
      this.reset();
      this.inc({ direction: 'to_docker' }, to);
      this.inc({ direction: 'from_docker' }, from);
    },
  });
  const hijacked = new Gauge({ name: 'calico_proxy_hijacked_streams_open', help: 'Hijacked calls (attach, exec, session) streaming now', registers });

  return {
    request(url, status) {
      const byStatus = counts.get(pathClass(url))!;
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    },
    intercepted(interceptor, seconds) {
      let child = icpChildren.get(interceptor);
      if (!child) icpChildren.set(interceptor, (child = icpSeconds.labels(interceptor)));
      child.observe(seconds);
    },
    dockerSocket(s) {
      live.add(s);
      s.once('close', () => {
        closed.toDocker += s.bytesWritten;
        closed.fromDocker += s.bytesRead;
        live.delete(s);
      });
    },
    hijacked(delta) {
      hijacked.inc(delta);
    },
  };
}
