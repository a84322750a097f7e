import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type Dockerode from 'dockerode';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Component } from '../lifecycle/component';
import type { Ipam } from '../ipam/types';
import type { PluginMetrics } from '../metrics/node-metrics';
import { HostDataplane } from '../dataplane/host-dataplane';
import type { EndpointLifecycle } from '../endpoints/lifecycle';
import type { EndpointRegistry } from '../endpoints/registry';
import type { StartTrace } from '../endpoints/start-trace';
import { DEFAULT_PLUGIN_DIR, DEFAULT_PLUGIN_NAME, calicoNetworkName } from '../names';
import { calicoNetworkMembers, ensureCalicoNetwork, inspectCalicoNetwork } from './docker-network';
import { DockerView, IpamDriver } from './ipam-driver';
import type { ListedContainer } from './address-claim';
import { NetworkDriver } from './network-driver';
import { buildPluginServer } from './server';

/** A socket file gone this long is served anew (shorter: an operator moving it aside for a moment). */
const SOCKET_GONE_GRACE_MS = 8000;

export interface DockerPluginOptions {
  /** `--plugin-name`: driver names and socket /run/docker/plugins/<name>.sock. */
  pluginName?: string;
  pluginDir?: string;
  /** This host's name in the datastore. */
  hostname: string;
  /** The process's one IPAM. */
  ipam: Ipam;
  /** Client of the upstream dockerd (never the proxy). */
  docker: Dockerode;
  /** The node's live endpoints and their lifecycle (record at Join, delete at DeleteEndpoint). */
  registry: EndpointRegistry;
  lifecycle: EndpointLifecycle;
  /** Where each container start spends its time. */
  trace?: StartTrace;
  /** Whether an IPv6 pool exists (decides IPv6 on the calico network). */
  hasIpv6Pool?: () => Promise<boolean>;
  log: Logger;
  /** Calls by method and result (the node's metrics). */
  metrics?: PluginMetrics;
  /** How often the socket file is checked, and served again when it vanished (default 1500 ms). */
  socketCheckMs?: number;
  /** How long the socket file must stay gone before a new one is served (default 8 s). */
  socketGoneGraceMs?: number;
  /** A veth's MTU for its IPv4 address (IP-in-IP pools: the tunnel's); undefined: the uplink's. */
  endpointMtu?: (ipv4: string | undefined) => number | undefined;
}

/** How long the socket check waits for the plugin's own socket to accept a connection. */
const SOCKET_PROBE_MS = 1000;

/**
 * The node's Docker plugin: network driver + IPAM driver on a unix socket that
 * dockerd discovers by name, plus the host's calico Docker network.
 */
export class DockerPlugin implements Component {
  readonly name = 'plugin';
  readonly pluginName: string;
  readonly socketPath: string;
  private readonly dataplane: HostDataplane;
  private readonly network: NetworkDriver;
  private readonly ipam: IpamDriver;
  private readonly log: Logger;
  private app?: FastifyInstance;
  private stopped = false;
  private retry?: NodeJS.Timeout;
  private socketCheck?: NodeJS.Timeout;
  /** Why the socket did not answer at the last check (undefined: it did). */
  private socketProblem?: string;
  private relistening = false;
  private missingSince?: number;
  private markNetworkReady!: () => void;
  private readonly networkReady = new Promise<void>((r) => (this.markNetworkReady = r));

  constructor(private readonly o: DockerPluginOptions) {
    this.pluginName = o.pluginName ?? DEFAULT_PLUGIN_NAME;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(this.pluginName)) {
      throw new Error(`invalid plugin name "${this.pluginName}": use letters, digits, "_", "." and "-"`);
    }
    this.socketPath = path.join(o.pluginDir ?? DEFAULT_PLUGIN_DIR, `${this.pluginName}.sock`);
    const log = o.log.child({ component: 'plugin' });
    this.dataplane = new HostDataplane(log, { owner: `calico-docker:${this.pluginName}` });
    this.network = new NetworkDriver({ host: o.hostname, dataplane: this.dataplane, endpoints: o.registry, lifecycle: o.lifecycle, trace: o.trace, log, endpointMtu: o.endpointMtu });
    this.ipam = new IpamDriver({
      ipam: o.ipam,
      hostname: o.hostname,
      endpoints: o.registry,
      log,
      dockerOwnerOf: (a) => this.dockerOwnerOf(a),
      docker: dockerView(o.docker),
      trace: o.trace,
    });
    this.log = log;
  }

  async start(): Promise<void> {
    await this.dataplane.start();
    await this.claimSocket();
    // A restarted plugin knows only what Docker tells it (adoptRunning), as a new process would.
    this.network.reset();
    await this.listen();
    this.o.log.info({ socket: this.socketPath }, 'Docker network and IPAM driver listening');
    this.stopped = false;
    this.socketCheck = setInterval(() => void this.checkSocket(), this.o.socketCheckMs ?? 1500);
    this.socketCheck.unref();
    // dockerd may start after the node (boot order) or restart under it: the
    // drivers serve regardless, and the network is ensured until it exists.
    try {
      await this.syncWithDocker();
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, `Docker network ${calicoNetworkName()} not ensured yet; retrying in the background`);
      this.retryInBackground();
    }
  }

  private async listen(): Promise<void> {
    const app = buildPluginServer({ network: this.network, ipam: this.ipam, log: this.log, metrics: this.o.metrics });
    try {
      await app.listen({ path: this.socketPath });
      // dockerd (root) is the plugin's only client: 0600 whatever the umask
      // (the node's own umask already made it 0700; this says it here too).
      fs.chmodSync(this.socketPath, 0o600);
    } catch (e) {
      await app.close().catch(() => undefined);
      throw e;
    }
    this.app = app;
  }

  /** Up when the socket file dockerd looks for exists and answered the last check. */
  health(): string | undefined {
    if (!this.app) return 'not listening';
    if (!fs.existsSync(this.socketPath)) return `socket ${this.socketPath} is gone: Docker cannot reach the plugin (listening again if it stays gone)`;
    return this.socketProblem;
  }

  /**
   * dockerd finds the plugin by its socket file only: one removed under a
   * running node (a cleanup script, /run remounted) leaves the node
   * unreachable for Docker. So the file is checked periodically and, when
   * gone, the plugin serves a new socket at the same path.
   */
  private async checkSocket(): Promise<void> {
    if (this.stopped || this.relistening || !this.app) return;
    if (fs.existsSync(this.socketPath)) {
      this.missingSince = undefined;
      this.socketProblem = await probeSocket(this.socketPath);
      return;
    }
    // Gone for a while, not just moved aside for a moment (an operator's
    // rename, a test): then a new socket is served at the same path.
    const now = Date.now();
    this.missingSince ??= now;
    if (now - this.missingSince < (this.o.socketGoneGraceMs ?? SOCKET_GONE_GRACE_MS)) return;
    this.missingSince = undefined;
    this.relistening = true;
    const old = this.app;
    try {
      this.log.warn({ socket: this.socketPath }, `plugin socket ${this.socketPath} vanished; listening on a new one`);
      await old.close().catch(() => undefined);
      if (this.stopped) return;
      fs.mkdirSync(path.dirname(this.socketPath), { recursive: true });
      await this.listen();
      if (this.stopped) {
        // stop() ran while we listened again: undo this socket too.
        await this.app?.close().catch(() => undefined);
        this.app = undefined;
        fs.rmSync(this.socketPath, { force: true });
        return;
      }
      this.socketProblem = undefined;
      this.log.info({ socket: this.socketPath }, 'Docker network and IPAM driver listening again');
    } catch (e) {
      this.socketProblem = `cannot listen on ${this.socketPath} again: ${(e as Error).message}`;
      this.log.error({ socket: this.socketPath, err: (e as Error).message }, this.socketProblem);
    } finally {
      this.relistening = false;
    }
  }

  /**
   * Removes this node's veths whose endpoint is gone: Docker tore down a
   * container while the node was down (or killed mid-start) and could not
   * tell us. Runs at start after the running containers are adopted; the
   * reconciler may call it again at any time.
   */
  async sweepLinks(): Promise<string[]> {
    const removed = await this.dataplane.sweep(() => this.o.registry.list().map((e) => e.name));
    if (removed.length) this.log.info({ links: removed }, `removed ${removed.length} veth(s) of containers that are gone`);
    return removed;
  }

  /** Resolves once the address releases Docker asked for so far have finished (they run after Docker's answer). */
  async settled(): Promise<void> {
    await this.ipam.settled();
  }

  /** Resolves once the calico network exists in Docker (tests, node readiness). */
  whenNetworkReady(): Promise<void> {
    return this.networkReady;
  }

  private async syncWithDocker(): Promise<void> {
    await this.adoptRunning();
    await this.sweepLinks();
    const ipv6 = this.o.hasIpv6Pool ? await this.o.hasIpv6Pool() : false;
    await ensureCalicoNetwork(this.o.docker, { pluginName: this.pluginName, ipv6, log: this.log });
    this.markNetworkReady();
  }

  private retryInBackground(): void {
    let delay = 1000;
    const attempt = async () => {
      if (this.stopped) return;
      try {
        await this.syncWithDocker();
        this.log.info(`Docker network ${calicoNetworkName()} ensured`);
      } catch (e) {
        delay = Math.min(delay * 2, 15000);
        this.log.debug({ err: (e as Error).message }, 'ensuring the Docker network failed again');
        this.retry = setTimeout(attempt, delay);
        this.retry.unref();
      }
    };
    this.retry = setTimeout(attempt, delay);
    this.retry.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.socketCheck) clearInterval(this.socketCheck);
    const app = this.app;
    this.app = undefined;
    if (app) {
      await app.close().catch(() => undefined);
      fs.rmSync(this.socketPath, { force: true });
    }
    this.dataplane.close();
  }

  /** Refuses a socket another live process serves; removes one a dead process left. */
  private async claimSocket(): Promise<void> {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true });
    if (!fs.existsSync(this.socketPath)) return;
    const live = await new Promise<boolean>((resolve) => {
      const s = net.connect(this.socketPath);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (live) {
      throw new Error(
        `plugin socket ${this.socketPath} is served by another process: stop it, or give this node its own --plugin-name`,
      );
    }
    fs.rmSync(this.socketPath, { force: true });
  }

  /** After a node restart: containers already on the network keep their veths; just learn them. */
  private async adoptRunning(): Promise<void> {
    const net = await inspectCalicoNetwork(this.o.docker);
    if (!net) return;
    for (const m of await calicoNetworkMembers(this.o.docker, this.o.hostname)) this.network.adopt(m.endpoint);
  }

  private async dockerOwnerOf(address: string): Promise<string | undefined> {
    const m = (await calicoNetworkMembers(this.o.docker, this.o.hostname)).find((x) => x.addresses.includes(address));
    return m ? `container ${m.name} (${m.endpoint.containerId.slice(0, 12)}) on Docker network ${calicoNetworkName()}` : undefined;
  }
}

/** How long dockerd may take to list its containers (it answers nothing while restoring them at its start). */
const LIST_DEADLINE_MS = 2000;

/** dockerd's container list (filtered: never every container) and a bounded inspect, for the IPAM driver's ownership checks. */
function dockerView(docker: Dockerode): DockerView {
  return {
    containers: async (filters) => {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), LIST_DEADLINE_MS);
      try {
        return (await docker.listContainers({ all: true, filters: JSON.stringify(filters), abortSignal: abort.signal })) as unknown as ListedContainer[];
      } finally {
        clearTimeout(timer);
      }
    },
    answers: async (id, ms) => {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), ms);
      try {
        await docker.getContainer(id).inspect({ abortSignal: abort.signal });
        return true;
      } catch {
        // Gone meanwhile: it answered (and is not the one being started).
        return !abort.signal.aborted;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Undefined when something accepts a connection on the socket in time, else why not. */
function probeSocket(socketPath: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    const timer = setTimeout(() => (s.destroy(), resolve(`socket ${socketPath} does not accept connections within ${SOCKET_PROBE_MS} ms`)), SOCKET_PROBE_MS);
    s.once('connect', () => (clearTimeout(timer), s.destroy(), resolve(undefined)));
    s.once('error', (e) => (clearTimeout(timer), resolve(`socket ${socketPath} does not answer: ${e.message}`)));
  });
}
