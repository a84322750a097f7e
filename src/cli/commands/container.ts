import { randomUUID } from 'node:crypto';
import type Dockerode from 'dockerode';
import type { Command } from 'commander';
import { EndpointStore } from '../../datastore';
import { EtcdIpam } from '../../ipam/ipam';
import { RESERVATION_HANDLE_PREFIX, calicoNetworkName } from '../../names';
import { silentLogger } from '../../log/logger';
import { inspectCalicoNetwork } from '../../plugin/docker-network';
import { RequestRefused, parseCalicoEnv } from '../../endpoints/calico-env';
import { refusalForIpamError } from '../../proxy/interceptors/ipam-refusal';
import { handleOf, isRunning, type ContainerView } from '../../endpoints/container-view';
import { EndpointLifecycle } from '../../endpoints/lifecycle';
import { EndpointRecorder } from '../../endpoints/recorder';
import { EndpointRegistry } from '../../endpoints/registry';
import { ReservationBook } from '../../endpoints/reservations';
import type { Ipam } from '../../ipam/types';
import type { Datastore } from '../../datastore';
import { dockerClient } from '../../node/docker-client';
import { withDatastore } from '../datastore';
import { CliError, UsageError, requireRoot } from '../errors';
import { addDockerOption, addHostnameOption, addStateDirOption, dockerOf, hostNameOf } from '../host';

/** The node's endpoint lifecycle, as a short-lived CLI process has it: the same writes and deletes. */
function lifecycleFor(ds: Datastore, ipam: Ipam, host: string): EndpointLifecycle {
  return new EndpointLifecycle({
    host,
    store: new EndpointStore(ds),
    registry: new EndpointRegistry(),
    reservations: new ReservationBook(),
    ipam,
    log: silentLogger(),
  });
}

/** What add and remove read from their flags: dockerd's address and this host's name. */
interface Flags {
  docker: string;
  hostname: string;
}

function flagsOf(cmd: Command): Flags {
  return { docker: dockerOf(cmd), hostname: hostNameOf(cmd).name };
}

async function inspect(docker: Dockerode, name: string): Promise<ContainerView & { Name?: string }> {
  try {
    return (await docker.getContainer(name).inspect()) as unknown as ContainerView & { Name?: string };
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) throw new CliError(`Container ${name} was not found.`);
    throw new CliError(`Unable to run docker commands (${(e as Error).message}). Is the docker daemon running?`);
  }
}

function parseRequest(ip: string): { ipv4?: string; ipv6?: string } {
  try {
    return parseCalicoEnv([`CALICO_IP=${ip}`])!;
  } catch (e) {
    if (e instanceof RequestRefused) throw new UsageError(`Invalid IP address specified: ${e.message.replace(/^CALICO_IP/, 'the address')}.`);
    throw e;
  }
}

/**
 * `calicoctl container add <container> <ip|auto>`: networks a running
 * container that was started without the proxy, the same way the proxy
 * would have (reserved address, calico network, recorded endpoint).
 */
async function add(name: string, ip: string, cmd: Command): Promise<void> {
  const wanted = parseRequest(ip);
  requireRoot('This command');
  const flags = flagsOf(cmd);
  const docker = dockerClient(flags.docker);
  const c = await inspect(docker, name);
  if (!isRunning(c)) throw new CliError(`${name} is not currently running.`);
  const current = c.NetworkSettings?.Networks?.[calicoNetworkName()];
  if (current) {
    const has = [current.IPAddress, current.GlobalIPv6Address].filter(Boolean) as string[];
    // Already so (auto, or the very address asked for): exit 0; another address: exit 1.
    const same = ip === 'auto' || has.includes(wanted.ipv4 ?? wanted.ipv6 ?? '');
    const message = `${name} has already been configured with Calico Networking${has.length ? ` (${has.join(' and ')})` : ''}.`;
    if (same) {
      process.stdout.write(message + '\n');
      return;
    }
    throw new CliError(message);
  }
  if (!(await inspectCalicoNetwork(docker))) {
    throw new CliError(`The ${calicoNetworkName()} Docker network does not exist on this host: start \`calicoctl node\` first.`);
  }
  const added = await withDatastore(cmd, async (ds) => {
    const ipam = new EtcdIpam(ds);
    const handle = RESERVATION_HANDLE_PREFIX + randomUUID();
    let allocations;
    try {
      allocations = await ipam.allocate({ handle, host: flags.hostname, ...wanted, attrs: { source: 'calicoctl', container: c.Id } });
    } catch (e) {
      throw new CliError(refusalForIpamError(e, `assigning ${ip} to ${name}`).message);
    }
    const ipv4 = allocations.find((a) => a.family === 4)?.address;
    const ipv6 = allocations.find((a) => a.family === 6)?.address;
    try {
      await docker.getNetwork(calicoNetworkName()).connect({
        Container: c.Id,
        EndpointConfig: { IPAMConfig: { ...(ipv4 ? { IPv4Address: ipv4 } : {}), ...(ipv6 ? { IPv6Address: ipv6 } : {}) } },
      });
    } catch (e) {
      await ipam.releaseByHandle(handle);
      throw new CliError(`Connecting ${name} to the ${calicoNetworkName()} network failed: ${(e as Error).message}`);
    }
    await new EndpointRecorder(docker, lifecycleFor(ds, ipam, flags.hostname)).record(c.Id);
    return [ipv4, ipv6].filter(Boolean).join(' and ');
  });
  process.stdout.write(`IP ${added} added to ${name}\n`);
}

/** `calicoctl container remove <container>`: takes a container off Calico (address, veth, endpoint). */
async function remove(name: string, cmd: Command): Promise<void> {
  requireRoot('This command');
  const flags = flagsOf(cmd);
  const docker = dockerClient(flags.docker);
  const c = await inspect(docker, name);
  const onNetwork = c.NetworkSettings?.Networks?.[calicoNetworkName()] !== undefined;
  const removed = await withDatastore(cmd, async (ds) => {
    const ipam = new EtcdIpam(ds);
    const handles = new Set(
      (await ipam.listByHost(flags.hostname)).filter((a) => a.attrs?.container === c.Id).map((a) => a.handle),
    );
    const label = handleOf(c);
    if (label) handles.add(label);
    const endpoints = await lifecycleFor(ds, ipam, flags.hostname).forgetContainer(c.Id);
    if (!onNetwork && !handles.size && !endpoints) return false;
    if (onNetwork) {
      try {
        await docker.getNetwork(calicoNetworkName()).disconnect({ Container: c.Id, Force: true });
      } catch (e) {
        throw new CliError(`Disconnecting ${name} from the ${calicoNetworkName()} network failed: ${(e as Error).message}`);
      }
    }
    for (const h of handles) await ipam.releaseByHandle(h);
    return true;
  });
  // Exit 0 when there is nothing to remove: already so.
  process.stdout.write(removed ? `Removed Calico interface from ${name}\n` : `Container ${name} doesn't contain any endpoints: nothing to remove.\n`);
}

export function registerContainer(program: Command): void {
  const container = program
    .command('container')
    .description('Add or remove Calico networking for containers started without the proxy');
  const common = (c: Command) => addStateDirOption(addHostnameOption(addDockerOption(c)));
  common(
    container
      .command('add')
      .description('Give a running container a Calico address: an IPv4 or IPv6 address in a pool, or auto')
      .argument('<container>', 'container name or id')
      .argument('<ip>', 'auto, or an address inside a configured pool'),
  ).action((name: string, ip: string, _flags: unknown, cmd: Command) => add(name, ip, cmd));
  common(
    container
      .command('remove')
      .description('Remove a container\'s Calico interface, endpoint and address')
      .argument('<container>', 'container name or id'),
  ).action((name: string, _flags: unknown, cmd: Command) => remove(name, cmd));
}
