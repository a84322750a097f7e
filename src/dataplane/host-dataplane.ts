import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { IpBatch } from './ip-batch';
import { GATEWAY_V4 } from '../names';
import { EndpointSpec, HostLink, Sysctl, gatewayRouteCommand, planSweep, hostSysctls, isAlreadyGone, planEndpoint, planEndpointRemoval } from './plan';

export interface HostDataplaneOptions {
  /** Root of the sysctl tree (tests may point it elsewhere). Default /proc/sys. */
  procSys?: string;
  /** `ip` binary. */
  ipPath?: string;
  /** MTU of both veth ends; default: the MTU of the default route's interface. */
  mtu?: number;
  /** Alias put on every host end this dataplane makes; sweep() removes only links carrying it. */
  owner?: string;
}

/**
 * Applies endpoint plans to the host: veth pairs, routes and sysctls. All
 * `ip` work goes through one long-lived batch process; sysctls are plain file
 * writes. Nothing here spawns a process per endpoint.
 */
export class HostDataplane {
  private readonly ip: IpBatch;
  private readonly procSys: string;
  private readonly ipPath: string;
  private mtu?: number;
  private ipv6Forwarding?: Promise<void>;

  constructor(private readonly log: Logger, private readonly opts: HostDataplaneOptions = {}) {
    this.ipPath = opts.ipPath ?? 'ip';
    this.mtu = opts.mtu;
    this.ip = new IpBatch(log, this.ipPath);
    this.procSys = opts.procSys ?? '/proc/sys';
  }

  /** Host-wide IPv4 forwarding (IPv6 is switched on with the first IPv6 endpoint or network). */
  async start(): Promise<void> {
    this.ip.open();
    await this.writeSysctls(hostSysctls(false), 'enabling IPv4 forwarding');
    await this.ensureGatewayRoute();
    this.mtu ??= await this.uplinkMtu();
    if (this.mtu) this.log.info({ mtu: this.mtu }, `container interfaces get the uplink MTU ${this.mtu}`);
  }

  /**
   * No overlay: a container's packets leave with the size they had, so its
   * interface gets the MTU of the interface holding the default route.
   */
  private async uplinkMtu(): Promise<number | undefined> {
    // Through `ip`, not /sys: a node entered into a namespace with nsenter still sees the machine's /sys.
    const ip = (args: string[]) =>
      new Promise<string>((resolve) => execFile(this.ipPath, args, (err, stdout) => resolve(err ? '' : stdout)));
    const dev = /\bdev (\S+)/.exec(await ip(['-o', '-4', 'route', 'show', 'default']))?.[1];
    if (!dev) return undefined;
    const mtu = Number(/\bmtu (\d+)/.exec(await ip(['-o', 'link', 'show', 'dev', dev]))?.[1]);
    return mtu >= 68 && mtu <= 65535 ? mtu : undefined;
  }

  /**
   * Proxy ARP answers for 169.254.1.1 only while the host has a route to it
   * through another interface; a host without a default route (a lab
   * namespace, an isolated server) would leave every container without a
   * gateway. Such a host gets a route to it on lo. It stays when the node
   * stops: running containers keep needing it.
   */
  private async ensureGatewayRoute(): Promise<void> {
    const reachable = await new Promise<boolean>((resolve) =>
      execFile(this.ipPath, ['-4', 'route', 'get', GATEWAY_V4], (err) => resolve(!err)),
    );
    if (reachable) return;
    await this.ip.runOk([gatewayRouteCommand()], `adding a route to the container gateway ${GATEWAY_V4}`);
    this.log.info(`this host has no route to ${GATEWAY_V4}: added one on lo so proxy ARP answers containers`);
  }

  enableIpv6Forwarding(): Promise<void> {
    this.ipv6Forwarding ??= this.writeSysctls(hostSysctls(true), 'enabling IPv6 forwarding').catch((e) => {
      this.ipv6Forwarding = undefined;
      throw e;
    });
    return this.ipv6Forwarding;
  }

  /**
   * Creates the endpoint's veth pair, routes and sysctls. A leftover link of
   * the same name (a retried CreateEndpoint) is replaced. On failure nothing
   * of this endpoint stays behind.
   */
  async addEndpoint(spec: EndpointSpec): Promise<void> {
    const what = `creating veth ${spec.hostIf} for endpoint ${spec.endpointId.slice(0, 12)}`;
    const plan = planEndpoint({ ...spec, mtu: spec.mtu ?? this.mtu, owner: spec.owner ?? this.opts.owner });
    if (spec.ipv6) await this.enableIpv6Forwarding();
    let failures = await this.ip.run(plan.commands);
    if (failures.length && failures[0].index === 0 && /File exists/i.test(failures[0].message)) {
      this.log.info({ hostIf: spec.hostIf }, 'replacing leftover link of a retried endpoint');
      await this.ip.run(planEndpointRemoval(spec.hostIf));
      failures = await this.ip.run(plan.commands);
    }
    try {
      if (failures.length) {
        const f = failures[0];
        throw new Error(`${what}: "ip ${f.command}" failed: ${f.message || 'unknown error'}`);
      }
      await this.writeSysctls(plan.sysctls, what);
    } catch (e) {
      if (!(failures.length && failures[0].index === 0)) await this.removeEndpointNow(spec.hostIf);
      throw e;
    }
  }

  /**
   * Removes the endpoint's veth without making the caller wait: Docker's
   * container teardown must not queue behind netlink. Already gone is success.
   */
  removeEndpoint(hostIf: string): void {
    this.removeEndpointNow(hostIf).catch((e) => this.log.warn({ hostIf, err: e }, 'removing veth failed'));
  }

  /** Removes the veth and waits for it; already gone is success. */
  async removeEndpointNow(hostIf: string): Promise<void> {
    const failures = await this.ip.run(planEndpointRemoval(hostIf));
    const real = failures.filter((f) => !isAlreadyGone(f.message));
    if (real.length) throw new Error(`removing veth ${hostIf}: ${real[0].message}`);
  }

  /**
   * Removes this owner's host ends whose names `keep` does not give (see planSweep);
   * returns their names. Needs the owner option.
   */
  async sweep(keep: () => Iterable<string>): Promise<string[]> {
    const owner = this.opts.owner;
    if (!owner) throw new Error('sweeping links needs an owner tag');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(this.ipPath, ['-j', 'link', 'show'], { maxBuffer: 64 << 20 }, (err, stdout) =>
        err ? reject(new Error(`listing links: ${err.message}`)) : resolve(stdout),
      ),
    );
    const links = JSON.parse(out || '[]') as HostLink[];
    // Asked after listing: an endpoint created meanwhile is either unlisted or already kept.
    const stale = planSweep(links, owner, new Set(keep()));
    for (const name of stale) await this.removeEndpointNow(name);
    return stale;
  }

  /** Runs arbitrary `ip` lines through the shared batch process (diagnostics, other dataplane parts). */
  runIp(commands: string[]) {
    return this.ip.run(commands);
  }

  close(): void {
    this.ip.close();
  }

  /** Kills the `ip` child at once (the node's stop bound ran out). */
  kill(): void {
    this.ip.kill();
  }

  private async writeSysctls(sysctls: Sysctl[], what: string): Promise<void> {
    await Promise.all(
      sysctls.map(async (s) => {
        try {
          await fsp.writeFile(path.join(this.procSys, s.key), s.value);
        } catch (e) {
          throw new Error(`${what}: setting ${s.key.replace(/\//g, '.')}=${s.value}: ${(e as Error).message}`);
        }
      }),
    );
  }
}
