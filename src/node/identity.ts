// The node's identity: a persistent id under the state directory, and the
// host name claimed in etcd for as long as this process lives (a lease kept
// alive; gone when the node dies). A second node starting with a host name
// that a live node holds is refused: otherwise each node's reconciler would
// release the other's live addresses as "containers that no longer exist".
// Once the name is ours, the host's BGP addresses are registered under it.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Lease } from 'etcd3';
import type { Logger } from 'pino';
import { Datastore, HostStore, NodeIdentityStore } from '../datastore';
import type { HostNodeValue } from '../datastore';
import type { Component } from '../lifecycle/component';

/** Seconds a dead node keeps its host name before another node may take it. */
const LEASE_TTL_S = 15;

export interface NodeIdentityOptions {
  hostname: string;
  stateDir: string;
  /** BGP addresses: `--ip` (detected when absent) and `--ip6`. */
  ip?: string;
  ip6?: string;
  /** This host's own AS (`--as`); absent: the host has none (the global AS applies). */
  as?: string;
  detectIp: () => string | undefined;
}

/** The id kept in <stateDir>/node-id, made on first start. */
export function nodeId(stateDir: string): string {
  const file = path.join(stateDir, 'node-id');
  try {
    const id = fs.readFileSync(file, 'utf8').trim();
    if (id) return id;
  } catch {
    /* first start */
  }
  fs.mkdirSync(stateDir, { recursive: true });
  const id = randomUUID();
  fs.writeFileSync(file, id + '\n');
  return id;
}

export class NodeIdentity implements Component {
  readonly name = 'identity';
  private lease?: Lease;
  private me?: HostNodeValue;
  private stopped = false;

  constructor(private readonly ds: Datastore, private readonly o: NodeIdentityOptions, private readonly log: Logger) {}

  async start(): Promise<void> {
    this.stopped = false;
    this.me = { id: nodeId(this.o.stateDir), pid: process.pid, machine: os.hostname(), stateDir: path.resolve(this.o.stateDir), since: Date.now() };
    await this.claim();
    const ip = this.o.ip ?? this.o.detectIp();
    const hosts = new HostStore(this.ds);
    const h = this.o.hostname;
    if (ip) {
      await hosts.register(h, { ip, ip6: this.o.ip6, as: this.o.as });
      this.log.info({ host: h, ip, ip6: this.o.ip6, as: this.o.as }, `registered host ${h} (${ip}${this.o.ip6 ? `, ${this.o.ip6}` : ''}${this.o.as ? `, AS ${this.o.as}` : ''})${this.o.ip ? '' : ' (address detected; set it with --ip)'}`);
    } else {
      await hosts.ensureGlobalConfig();
      this.log.warn({ host: h }, `host ${h} not registered for BGP: no IPv4 address found; pass --ip`);
    }
  }

  private async claim(): Promise<void> {
    const me = this.me!;
    const lease = this.ds.client.lease(LEASE_TTL_S, { autoKeepAlive: true });
    this.lease = lease;
    lease.on('lost', (err) => {
      if (this.stopped || this.lease !== lease) return;
      this.log.error({ err: err.message }, `lost the etcd lease holding host name ${this.o.hostname}; claiming it again`);
      this.reclaim();
    });
    const leaseId = await this.ds.call(`granting the lease for host name ${this.o.hostname}`, () => lease.grant());
    const r = await new NodeIdentityStore(this.ds).claim(this.o.hostname, me, leaseId);
    if (!r.claimed) {
      lease.release();
      const h = r.holder;
      throw new Error(
        `host name ${this.o.hostname} is held by another live node (node ${h.id.slice(0, 8)}, pid ${h.pid} on machine ${h.machine}, ` +
          `state dir ${h.stateDir}, since ${new Date(h.since).toISOString()}); this node is ${me.id.slice(0, 8)} (pid ${me.pid} on ${me.machine}, ` +
          `state dir ${me.stateDir}). Two nodes on one name would release each other's addresses: give this node its own --name, or stop the other node first`,
      );
    }
  }

  private reclaim(delay = 1000): void {
    const t = setTimeout(() => {
      if (this.stopped) return;
      this.claim().catch((e) => {
        this.log.error({ err: (e as Error).message }, 'claiming the host name again failed; retrying');
        this.reclaim(Math.min(delay * 2, 10000));
      });
    }, delay);
    t.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const lease = this.lease;
    this.lease = undefined;
    if (!lease) return;
    // Revoking deletes the name key at once; with etcd down it simply expires.
    await this.ds.call(`revoking the lease for host name ${this.o.hostname}`, () => lease.revoke()).catch((e) => {
      lease.release();
      this.log.warn({ err: (e as Error).message }, `host name ${this.o.hostname} is released when its lease expires (${LEASE_TTL_S} s)`);
    });
  }
}
