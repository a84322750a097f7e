import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Allocation, Ipam } from '../ipam/types';
import { IpamError } from '../ipam/types';
import { GATEWAY_V4, GATEWAY_V6, calicoNetworkName } from '../names';
import { Family, PluginError, parseAddress, withHostPrefix } from './address';
import { ListedContainer, claimHeldAddress } from './address-claim';
import { OWNER_ATTR, addressTakenMessage } from '../ipam/owner';
import type { EndpointRegistry } from '../endpoints/registry';
import type { StartTrace } from '../endpoints/start-trace';
import {
  ADDRESS_SPACE_GLOBAL,
  ADDRESS_SPACE_LOCAL,
  DOCKER_HANDLE_PREFIX,
  GATEWAY_REQUEST_TYPE,
  HANDLE_LABEL,
  POOL_ID_V4,
  POOL_ID_V6,
} from '../names';

export interface IpamDriverOptions {
  ipam: Ipam;
  /** This host's name: block affinity for allocations. */
  hostname: string;
  endpoints: EndpointRegistry;
  log: Logger;
  /**
   * Who in Docker holds this address on the calico network right now, if
   * anyone ("container web1 (3f2a...)"). Asked only when an explicit address
   * is owned by a Docker-driver handle this process did not allocate (e.g.
   * after a node restart), to tell a live owner from a missed release.
   */
  dockerOwnerOf?: (address: string) => Promise<string | undefined>;
  /**
   * dockerd's container list and a probe of one container, to tell whether
   * the container asking for an address IPAM holds for another is its owner
   * (see ./address-claim.ts). Without it such an address is refused.
   */
  docker?: DockerView;
  /** RequestAddress timed per container start. */
  trace?: StartTrace;
}

export interface DockerView {
  /**
   * The containers dockerd knows that match `filters` (`GET
   * /containers/json?all=1&filters=...`: answered while dockerd starts a
   * container). Rejects when dockerd does not answer within a few seconds
   * (it serves no API while restoring its containers).
   */
  containers(filters: Record<string, string[]>): Promise<ListedContainer[]>;
  /** Whether inspecting the container answers within `ms` (dockerd holds the lock of the container it is starting). */
  answers(id: string, ms: number): Promise<boolean>;
}

/** Every container state but running (dockerd's `status` filter). */
const NOT_RUNNING = ['created', 'restarting', 'removing', 'paused', 'exited', 'dead'];

/** How long a container's inspect may take before it counts as the one being started. */
const PROBE_MS = 1000;

export interface RequestPool {
  AddressSpace?: string;
  Pool?: string;
  SubPool?: string;
  V6?: boolean;
}

/**
 * The Docker IPAM driver. Calico pools, not Docker subnets, decide addresses:
 * the network spans 0.0.0.0/0 (::/0) so Docker accepts any explicit address.
 *
 * Handles: an address the proxy reserved ("resv-..." handle) belongs to its
 * container until the reconciler releases it after removal, so Docker's
 * release at container stop leaves it alone and a restart gets it back.
 * Addresses this driver allocates itself (`docker run --net calico [--ip X]`,
 * `docker network connect`) get a "docker-..." handle and follow Docker's
 * allocate/release calls.
 */
export class IpamDriver {
  /** docker- handles this process allocated and has not released: known live. */
  private readonly ownHandles = new Set<string>();
  /** Address -> its release in flight. */
  private readonly releasing = new Map<string, Promise<void>>();

  constructor(private readonly o: IpamDriverOptions) {}

  getCapabilities() {
    return { RequiresMACAddress: false, RequiresRequestReplay: false };
  }

  getDefaultAddressSpaces() {
    return { LocalDefaultAddressSpace: ADDRESS_SPACE_LOCAL, GlobalDefaultAddressSpace: ADDRESS_SPACE_GLOBAL };
  }

  requestPool(req: RequestPool) {
    const v6 = req.V6 === true;
    const whole = v6 ? '::/0' : '0.0.0.0/0';
    if (req.SubPool) {
      throw new PluginError(`calico IPAM does not support --ip-range; manage address ranges with "calicoctl pool add"`);
    }
    if (req.Pool && req.Pool !== whole) {
      throw new PluginError(
        `calico IPAM serves the whole address space: create the network with --subnet ${whole} ` +
          `(not ${req.Pool}) and manage address ranges with "calicoctl pool add"`,
      );
    }
    return { PoolID: v6 ? POOL_ID_V6 : POOL_ID_V4, Pool: whole, Data: {} };
  }

  releasePool(_poolId: string) {
    return {};
  }

  async requestAddress(req: { PoolID: string; Address?: string; Options?: Record<string, unknown> | null }) {
    const family = poolFamily(req.PoolID);
    if (req.Options?.RequestAddressType === GATEWAY_REQUEST_TYPE) {
      // Containers route everything via 169.254.1.1 (IPv6: the host veth's
      // link-local), answered by the host; no pool address is spent on it.
      return { Address: family === 4 ? `${GATEWAY_V4}/32` : `${GATEWAY_V6}/128`, Data: {} };
    }
    const t0 = this.o.trace?.now();
    const address = req.Address ? await this.explicit(req.Address, family) : await this.auto(family);
    if (t0 !== undefined) this.o.trace?.requestAddress(address, t0);
    return { Address: withHostPrefix(address, family), Data: {} };
  }

  /**
   * Answers at once and releases in the background: Docker calls this on
   * the container's teardown path (`run --rm` waits for it). A request for
   * the same address waits for the release first.
   */
  async releaseAddress(req: { PoolID: string; Address: string }) {
    const family = poolFamily(req.PoolID);
    const { address } = parseAddress(req.Address, 'address');
    if (address === (family === 4 ? GATEWAY_V4 : GATEWAY_V6)) return {};
    const prior = this.releasing.get(address) ?? Promise.resolve();
    const release = prior.then(() => this.release(address));
    this.releasing.set(address, release);
    release
      .catch((e) => this.o.log.warn({ address, err: (e as Error).message }, 'releasing address at Docker request failed'))
      .finally(() => {
        if (this.releasing.get(address) === release) this.releasing.delete(address);
      });
    return {};
  }

  /** Resolves once every release of Docker's that is in flight has finished. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.releasing.values()]);
  }

  private async release(address: string): Promise<void> {
    const owner = await this.ipamCall(`looking up ${address}`, () => this.o.ipam.lookup(address));
    // Reserved addresses outlive a stop: the reconciler frees them once the container is gone.
    if (!owner || !owner.handle.startsWith(DOCKER_HANDLE_PREFIX) || owner.host !== this.o.hostname) return;
    await this.ipamCall(`releasing ${address}`, () => this.o.ipam.releaseAddress(address, owner.handle));
    this.ownHandles.delete(owner.handle);
    this.o.log.debug({ address, handle: owner.handle }, 'released address at Docker request');
  }

  private async auto(family: Family): Promise<string> {
    const handle = newHandle();
    const allocs = await this.ipamCall('allocating an address', () =>
      this.o.ipam.allocate({
        handle,
        host: this.o.hostname,
        ...(family === 4 ? { ipv4: 'auto' } : { ipv6: 'auto' }),
        attrs: { source: 'docker-ipam-driver' },
      }),
    );
    this.ownHandles.add(handle);
    return pick(allocs, family);
  }

  private async explicit(text: string, family: Family): Promise<string> {
    const { address, family: f } = parseAddress(text, 'requested address');
    if (f !== family) throw new PluginError(`requested address ${address} is IPv${f} but Docker asked the IPv${family} pool`);
    await this.releasing.get(address)?.catch(() => undefined); // a restart right after its stop
    const live = this.o.endpoints.findByAddress(address);
    if (live) {
      const holder = await this.o.dockerOwnerOf?.(address).catch(() => undefined);
      throw new PluginError(
        `address ${address} belongs to ${holder ?? `endpoint ${live.endpointId.slice(0, 12)} (${live.name}) on this host`}; remove it first`,
      );
    }
    const owner = await this.ipamCall(`looking up ${address}`, () => this.o.ipam.lookup(address));
    // Handles of other hosts belong to containers there: never ours to accept or free.
    if (owner && owner.host !== this.o.hostname) throw new PluginError(addressTakenMessage(address, owner, this.o.hostname));
    if (owner && owner.handle.startsWith(DOCKER_HANDLE_PREFIX)) await this.takeOverStale(owner);
    else if (owner && (await this.claimHeld(address, owner))) return address; // its owner starting
    const handle = newHandle();
    const allocs = await this.ipamCall(`allocating ${address}`, () =>
      this.o.ipam.allocate({
        handle,
        host: this.o.hostname,
        ...(family === 4 ? { ipv4: address } : { ipv6: address }),
        attrs: { source: 'docker-ipam-driver' },
      }),
    );
    this.ownHandles.add(handle);
    return pick(allocs, family);
  }

  /**
   * An address IPAM holds for a container of this host (a reservation of the
   * proxy, `calicoctl container add`): true when the container asking is its
   * recorded owner; false when that owner is gone (its handle released
   * here, by proof: the container IPAM names no longer exists); else refused.
   */
  private async claimHeld(address: string, owner: Allocation): Promise<boolean> {
    const docker = this.o.docker;
    if (!docker) throw new PluginError(addressTakenMessage(address, owner, this.o.hostname));
    let containers: ListedContainer[];
    try {
      containers = await claimCandidates(docker, owner);
    } catch (e) {
      // dockerd serves no API while it restores its containers at its own
      // start, and those starts (restart policies) ask for their addresses
      // then: the address goes to the container asking, as before this check.
      this.o.log.warn({ address, handle: owner.handle, err: (e as Error).message }, 'dockerd cannot list containers (restoring?): held address given without an ownership check');
      return true;
    }
    const claim = claimHeldAddress(address, owner, this.o.hostname, containers);
    switch (claim.kind) {
      case 'refuse':
        throw new PluginError(claim.message);
      case 'owner-gone':
        this.o.log.info({ address, handle: owner.handle, container: claim.owner }, 'the recorded owner of the address no longer exists; releasing its handle');
        await this.ipamCall(`releasing ${owner.handle}`, () => this.o.ipam.releaseByHandle(owner.handle));
        return false;
      case 'probe': {
        const answers = await Promise.all(claim.others.map((id) => docker.answers(id, PROBE_MS).catch(() => false)));
        const starting = claim.others.filter((_, i) => !answers[i]);
        if (starting.length) {
          this.o.log.warn({ address, handle: owner.handle, owner: owner.attrs[OWNER_ATTR], asking: starting }, 'refused an address that belongs to another container');
          throw new PluginError(claim.message);
        }
        return true;
      }
      case 'accept':
        if (claim.adopt) {
          const id = claim.adopt;
          await this.ipamCall(`recording the owner of ${owner.handle}`, () => this.o.ipam.setAttrs(owner.handle, { [OWNER_ATTR]: id }));
        }
        return true;
    }
  }

  /**
   * An address held by a Docker-driver handle: refuse while its container
   * lives; free it when Docker's release was missed (node down at the time).
   */
  private async takeOverStale(owner: Allocation): Promise<void> {
    if (this.ownHandles.has(owner.handle)) {
      throw new PluginError(addressTakenMessage(owner.address, owner, this.o.hostname));
    }
    const holder = this.o.dockerOwnerOf ? await this.o.dockerOwnerOf(owner.address) : 'a container (cannot check Docker)';
    if (holder) throw new PluginError(`address ${owner.address} belongs to ${holder}; remove it first`);
    this.o.log.info({ address: owner.address, handle: owner.handle }, 'freeing address whose Docker release was missed');
    await this.ipamCall(`releasing stale ${owner.address}`, () => this.o.ipam.releaseAddress(owner.address, owner.handle));
  }

  private async ipamCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof IpamError) throw new PluginError(`calico IPAM: ${e.message}`);
      throw new PluginError(`calico IPAM: ${what}: ${(e as Error).message}`);
    }
  }
}

/**
 * The containers claimHeldAddress decides on, and only those (what grows
 * with the host's running containers stays out of a container's start):
 * the address's recorded owner (or, before it is recorded, the containers
 * labelled with its handle), and the containers on the calico network that
 * are not running, the only ones that may be asking for the address now.
 */
async function claimCandidates(docker: DockerView, owner: Allocation): Promise<ListedContainer[]> {
  const ownerId = owner.attrs[OWNER_ATTR];
  const lists = await Promise.all([
    docker.containers(ownerId ? { id: [ownerId] } : { label: [`${HANDLE_LABEL}=${owner.handle}`] }),
    docker.containers({ network: [calicoNetworkName()], status: NOT_RUNNING }),
  ]);
  const byId = new Map<string, ListedContainer>();
  for (const c of lists.flat()) byId.set(c.Id, c);
  return [...byId.values()];
}

function newHandle(): string {
  return DOCKER_HANDLE_PREFIX + randomUUID();
}

function pick(allocs: Allocation[], family: Family): string {
  const a = allocs.find((x) => x.family === family);
  if (!a) throw new PluginError(`calico IPAM returned no IPv${family} address`);
  return a.address;
}

export function poolFamily(poolId: string): Family {
  if (poolId === POOL_ID_V4) return 4;
  if (poolId === POOL_ID_V6) return 6;
  throw new PluginError(`unknown pool id "${poolId}": this network was not created by calico IPAM`);
}
