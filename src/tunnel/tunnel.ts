// The node's IP-in-IP component: follows the pools and hosts (datastore
// syncer) and every host's blocks (the BGP block watch), computes what the
// tunnel wants (./plan.ts, pure) and puts it in the kernel:
//   - tunl0 up with the underlay's MTU minus 20 and an address of this
//     host's own (from one of its blocks in an IP-in-IP pool, held in IPAM
//     under the handle ipip-tunnel-addr-<host>), so what the host itself
//     sends through the tunnel has a source the other hosts route back;
//   - `<block> via <host --ip> dev tunl0 onlink proto 80` for every other
//     host's block the pool's mode tunnels to (BIRD keeps its own route for
//     those out of the kernel: bgp/render.ts calico_tunnelled_v4);
//   - the protocol-4 filter (./policy.ts), through the kernel applier.
// When the last IP-in-IP pool goes, all of it goes: routes, address (and
// its IPAM allocation), the filter; tunl0 is set down (the kernel's
// fallback device cannot be deleted; one we had to create is deleted).
// A pass runs on every change and every resyncMs, and repairs what someone
// else changed (a route BIRD or an operator replaced).
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import { BlockWatch } from '../bgp/block-watch';
import { emptyState } from '../dataplane/applier/types';
import type { KernelApplier } from '../dataplane/applier/types';
import type { Datastore } from '../datastore/datastore';
import { TUNNEL_HANDLE_PREFIX } from '../datastore/pool-store';
import type { Pool } from '../datastore/pool-store';
import { addressAt, BLOCK_PREFIX, parseCidr } from '../address/cidr';
import { narrowestPool } from '../address/pools';
import type { Ipam } from '../ipam/types';
import { IpamError } from '../ipam/types';
import type { Component } from '../lifecycle/component';
import { SerialPass } from '../lifecycle/serial-pass';
import { ipipDevice, TUNNEL_ROUTE_PROTO } from '../names/kernel';
import type { DatastoreSnapshot, DatastoreSyncer } from '../syncer/types';
import { endpointMtu, KernelRoute, routeCommands, TunnelPlan, tunnelPlan, Underlay, underlayOf } from './plan';
import { renderIpipPolicy } from './policy';

export interface TunnelOptions {
  hostname: string;
  datastore: Datastore;
  syncer: DatastoreSyncer;
  applier: KernelApplier;
  ipam: Ipam;
  log: Logger;
  /** Re-read the kernel and repair this often. Default 5000 ms. */
  resyncMs?: number;
  /** Delay between a change and the pass it causes. Default 20 ms. */
  debounceMs?: number;
}

/** What `calicoctl status` shows of the tunnel (the node's status file). */
export interface TunnelStatus {
  enabled: boolean;
  device: string;
  mtu?: number;
  address?: string;
  underlay?: Underlay;
  /** The IP-in-IP pools with their modes. */
  pools: { cidr: string; mode: string }[];
  routes: { dst: string; via: string; host: string }[];
  /** Why the tunnel is not (fully) in place, when it is not. */
  error?: string;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) =>
    execFile(cmd, args, { encoding: 'utf8', timeout: 10_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr: stderr || (err ? err.message : '') }),
    ),
  );
}

export class Tunnel implements Component {
  readonly name = 'tunnel';
  /** The applier's owner name for the protocol-4 filter. */
  static readonly OWNER = 'ipip';

  private readonly log: Logger;
  private readonly device = ipipDevice();
  private readonly blockWatch: BlockWatch;
  private unsubscribe?: () => void;
  private snapshot?: DatastoreSnapshot;
  private underlayCache?: { ip: string; underlay?: Underlay };
  private plan?: TunnelPlan;
  /** The plan the last pass that succeeded put in place (status shows its routes, not ones still being programmed). */
  private inPlace?: TunnelPlan;
  private address?: string;
  private error?: string;
  private stopped = false;
  private resync?: NodeJS.Timeout;
  /** One pass at a time; a change during one schedules another. */
  private readonly passes: SerialPass;
  /** Cleaned up since IP-in-IP was last on (a disabled pass cleans up at start and after an enabled one only). */
  private cleaned = false;
  /** The applier has heard from us once (it applies nothing before every owner spoke). */
  private told = false;

  constructor(private readonly o: TunnelOptions) {
    this.log = o.log;
    this.blockWatch = new BlockWatch({ ds: o.datastore, log: this.log, onChange: () => this.schedule() });
    this.passes = new SerialPass({
      body: () => this.apply(),
      onError: (e) => {
        this.setError(e.message);
        // The applier waits for every owner's first word before it touches the kernel: never hold policy back.
        if (!this.told) this.o.applier.set(Tunnel.OWNER, emptyState());
        this.told = true;
      },
      debounceMs: o.debounceMs ?? 20,
      stopped: () => this.stopped,
    });
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.snapshot = await this.o.syncer.whenSynced();
    await this.blockWatch.start();
    this.unsubscribe = this.o.syncer.subscribe((e) => {
      this.snapshot = e.snapshot;
      if (e.type === 'update' && !e.changed.has('pools') && !e.changed.has('hosts')) return;
      this.schedule();
    });
    await this.passes.run();
    this.resync = setInterval(() => this.schedule(), this.o.resyncMs ?? 5000);
    this.resync.unref();
  }

  /** Follows nothing more; what is in the kernel stays (running containers keep their tunnel). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.passes.cancel();
    if (this.resync) clearInterval(this.resync);
    this.resync = undefined;
    await this.blockWatch.stop();
    await this.passes.settled();
  }

  /** The subnet of the interface holding this host's --ip (BIRD's cross-subnet filter uses the same). */
  localSubnet(): string | undefined {
    return this.underlay()?.subnet;
  }

  /** A new veth's MTU for this address: the tunnel's in an IP-in-IP pool, else undefined (the default). */
  endpointMtu(ipv4: string | undefined): number | undefined {
    const pools = this.snapshot ? [...this.snapshot.pools.values()] : [];
    return endpointMtu(ipv4, pools, this.underlay()?.mtu);
  }

  health(): string | undefined {
    return this.error;
  }

  status(): Record<string, unknown> {
    const plan = this.plan;
    const pools = this.snapshot ? [...this.snapshot.pools.values()].filter((p) => p.ipipMode) : [];
    const s: TunnelStatus = {
      enabled: plan?.enabled ?? false,
      device: this.device,
      pools: pools.map((p) => ({ cidr: p.cidr, mode: p.ipipMode! })),
      routes: plan?.enabled ? (this.inPlace?.routes ?? []) : [],
    };
    if (plan?.mtu !== undefined) s.mtu = plan.mtu;
    if (this.address) s.address = this.address;
    const u = this.underlay();
    if (u) s.underlay = u;
    if (this.error) s.error = this.error;
    return s as unknown as Record<string, unknown>;
  }

  /** The interface holding this host's registered --ip, re-read when that address changes. */
  private underlay(): Underlay | undefined {
    const ip = this.snapshot?.hosts.get(this.o.hostname)?.ip;
    if (!ip) return undefined;
    if (this.underlayCache?.ip !== ip) {
      this.underlayCache = { ip };
      void this.readUnderlay(ip);
    }
    return this.underlayCache.underlay;
  }

  private async readUnderlay(ip: string): Promise<Underlay | undefined> {
    const r = await run('ip', ['-j', '-4', 'addr', 'show']);
    let u: Underlay | undefined;
    try {
      u = underlayOf(r.stdout, ip);
    } catch {
      u = undefined;
    }
    if (this.underlayCache?.ip === ip) this.underlayCache.underlay = u;
    if (!u) this.log.warn({ ip }, `no interface holds this host's address ${ip}: the tunnel's MTU and the cross-subnet mode's subnet are unknown`);
    return u;
  }

  private schedule(): void {
    this.passes.schedule();
  }

  private setError(error: string | undefined): void {
    if (error && error !== this.error) this.log.error(`IP-in-IP: ${error}`);
    if (!error && this.error) this.log.info('IP-in-IP: the tunnel is in place again');
    this.error = error;
  }

  private async apply(): Promise<void> {
    if (this.stopped || !this.snapshot) return;
    const snap = this.snapshot;
    const me = snap.hosts.get(this.o.hostname)?.ip;
    const underlay = me ? ((this.underlayCache?.ip === me && this.underlayCache.underlay) || (await this.freshUnderlay(me))) : undefined;
    const plan = tunnelPlan({ hostname: this.o.hostname, hosts: snap.hosts.values(), pools: snap.pools.values(), hostRoutes: this.blockWatch.routes(), underlay });
    const was = this.plan;
    this.plan = plan;
    this.o.applier.set(Tunnel.OWNER, renderIpipPolicy(plan));
    this.told = true;
    if (!plan.enabled) {
      this.inPlace = undefined;
      if (was?.enabled || !this.cleaned) await this.remove(was?.enabled === true, [...snap.pools.values()]);
      this.cleaned = true;
      this.setError(undefined);
      return;
    }
    this.cleaned = false;
    await this.ensureDevice(plan);
    await this.ensureAddress([...snap.pools.values()]);
    await this.ensureRoutes(plan);
    this.inPlace = plan;
    if (!was?.enabled) this.log.info({ mtu: plan.mtu, pools: plan.ipipPools, routes: plan.routes.length }, `IP-in-IP: ${this.device} up`);
    this.setError(undefined);
  }

  private async freshUnderlay(ip: string): Promise<Underlay | undefined> {
    this.underlayCache = { ip };
    return this.readUnderlay(ip);
  }

  /** tunl0 present (modprobe ipip where needed), its MTU set, up. */
  private async ensureDevice(plan: TunnelPlan): Promise<void> {
    const dev = this.device;
    if ((await run('ip', ['link', 'show', 'dev', dev])).code !== 0) {
      const mp = await run('modprobe', ['ipip']);
      if ((await run('ip', ['link', 'show', 'dev', dev])).code !== 0) {
        // No fallback device (net.core.fb_tunnels_only_for_init_net in a namespace): make one.
        const add = await run('ip', ['link', 'add', 'name', dev, 'type', 'ipip']);
        if (add.code !== 0) {
          throw new Error(
            `cannot bring up ${dev}: this kernel has no IP-in-IP support (CONFIG_NET_IPIP): "modprobe ipip" said: ${oneLine(mp.stderr) || `exit ${mp.code}`}; ` +
              `"ip link add ${dev} type ipip" said: ${oneLine(add.stderr).replace(/\.$/, '')}. Containers in the IP-in-IP pools ${plan.ipipPools.join(', ')} cannot reach other hosts' containers`,
          );
        }
      }
    }
    const args = ['link', 'set', 'dev', dev, ...(plan.mtu !== undefined ? ['mtu', String(plan.mtu)] : []), 'up'];
    const r = await run('ip', args);
    if (r.code !== 0) throw new Error(`"ip ${args.join(' ')}" failed: ${oneLine(r.stderr)}`);
  }

  /**
   * An address of this host's own on tunl0: kept while it lies in one of this
   * host's blocks of an IP-in-IP pool, else one is allocated in such a block
   * (none yet: none for now; the host's --ip is then the source, which the
   * other hosts reach natively).
   */
  private async ensureAddress(pools: Pool[]): Promise<void> {
    const handle = TUNNEL_HANDLE_PREFIX + this.o.hostname;
    const mine = (this.blockWatch.routes()[this.o.hostname]?.blocks ?? []).filter((b) => {
      const c = parseCidr(b);
      return c.family === 4 && narrowestPool(c, pools)?.ipip;
    });
    const held = (await this.o.ipam.listByHandle(handle)).filter((a) => a.family === 4);
    let address = held.find((a) => mine.includes(a.block))?.address;
    for (const a of held) if (a.address !== address) await this.o.ipam.releaseAddress(a.address, handle);
    if (!address) address = await this.allocateIn(mine, handle);
    this.address = address;
    const want = address ? [`${address}/32`] : [];
    const have = addressesOf((await run('ip', ['-j', '-4', 'addr', 'show', 'dev', this.device])).stdout);
    for (const a of have) if (!want.includes(a)) await run('ip', ['addr', 'del', a, 'dev', this.device]);
    for (const a of want) {
      if (have.includes(a)) continue;
      const r = await run('ip', ['addr', 'replace', a, 'dev', this.device]);
      if (r.code !== 0) throw new Error(`giving ${this.device} the address ${a} failed: ${oneLine(r.stderr)}`);
    }
  }

  /** One free address in the first of `blocks` that has one, tried from the top (containers fill blocks from the bottom). */
  private async allocateIn(blocks: string[], handle: string): Promise<string | undefined> {
    for (const b of blocks) {
      const c = parseCidr(b);
      for (let ord = 2 ** (32 - BLOCK_PREFIX[4]) - 1; ord >= 0; ord--) {
        const ip = addressAt(c, ord);
        try {
          await this.o.ipam.allocate({ handle, host: this.o.hostname, ipv4: ip, attrs: { use: 'ipip-tunnel' } });
          return ip;
        } catch (e) {
          if (e instanceof IpamError && e.code === 'IN_USE') continue;
          throw e;
        }
      }
    }
    return undefined;
  }

  private async ensureRoutes(plan: TunnelPlan): Promise<void> {
    const cmds = routeCommands(plan, await tunnelRoutes(), this.device, TUNNEL_ROUTE_PROTO);
    for (const c of cmds) {
      const r = await run('ip', c.split(' '));
      if (r.code !== 0 && !/No such process/.test(r.stderr)) throw new Error(`"ip ${c}" failed: ${oneLine(r.stderr)}`);
    }
    if (cmds.length) this.log.info({ commands: cmds }, `IP-in-IP: ${cmds.length} route change(s) through ${this.device}`);
  }

  /**
   * Everything of ours goes: routes, address and its allocation, the device
   * (down, and deleted where the kernel lets us). Idempotent. The device is
   * ours when this process used it, or (after a restart) when it holds an
   * address of a pool; a tunl0 someone else set up is left alone.
   */
  private async remove(usedByUs: boolean, pools: Pool[]): Promise<void> {
    const routes = await removeTunnelFromKernel(this.device, (addrs) => usedByUs || addrs.some(inSomePool(pools)));
    await this.o.ipam.releaseByHandle(TUNNEL_HANDLE_PREFIX + this.o.hostname);
    this.address = undefined;
    if (routes) this.log.info({ routes }, `IP-in-IP: no IP-in-IP pool left; ${this.device} and its routes removed`);
  }
}

/**
 * The tunnel's kernel state goes: every route of ours (proto 80), and, when
 * `ours` says the device's IPv4 addresses make it ours, its addresses, the
 * device down and deleted (the ipip module's fallback tunl0 cannot be
 * deleted: it stays down and empty). Idempotent. Used by the node when IP-in-IP
 * is turned off and by `node stop --force` once the node exited. Returns how
 * many routes it removed.
 */
export async function removeTunnelFromKernel(device: string, ours: (addrs: string[]) => boolean): Promise<number> {
  const routes = await tunnelRoutes().catch(() => [] as KernelRoute[]);
  for (const c of routeCommands({ routes: [] }, routes, device, TUNNEL_ROUTE_PROTO)) await run('ip', c.split(' '));
  const link = await run('ip', ['-j', '-4', 'addr', 'show', 'dev', device]);
  if (link.code === 0 && ours(addressesOf(link.stdout))) {
    await run('ip', ['addr', 'flush', 'dev', device]);
    await run('ip', ['link', 'set', 'dev', device, 'down']);
    await run('ip', ['link', 'del', 'dev', device]);
  }
  return routes.length;
}

/** Our routes through the tunnel (protocol 80), as the kernel has them. */
async function tunnelRoutes(): Promise<KernelRoute[]> {
  const r = await run('ip', ['-j', '-4', 'route', 'show', 'proto', String(TUNNEL_ROUTE_PROTO)]);
  if (r.code !== 0) throw new Error(`reading the tunnel's routes failed: ${oneLine(r.stderr)}`);
  return JSON.parse(r.stdout || '[]') as KernelRoute[];
}

/** Whether an address of a device (`a.b.c.d/len`) lies in one of `pools`: what makes a tunl0 ours after a restart. */
export function inSomePool(pools: readonly Pool[]): (addr: string) => boolean {
  return (addr) => narrowestPool(parseCidr(addr.replace(/\/\d+$/, '/32')), pools) !== undefined;
}

function addressesOf(json: string): string[] {
  try {
    const links = JSON.parse(json || '[]') as { addr_info?: { family: string; local: string; prefixlen: number }[] }[];
    return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`));
  } catch {
    return [];
  }
}

function oneLine(s: string): string {
  return s.trim().replace(/\s+/g, ' ');
}
