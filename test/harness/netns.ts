// Network namespaces as "hosts" (the blog post's lab on one machine): each
// Netns is a host with its own interfaces, routes and firewall; vethLink
// wires two of them (or one and the machine itself). Everything made here
// is removed at teardown, even when the test failed.
import { onTeardown } from './teardown';
import { run, runOk, RunOptions, RunResult } from './exec';

let seq = 0;

/** A name no other test process uses: prefix + our pid + a counter (<= 15 chars for interfaces). */
export function uniqueName(prefix: string): string {
  return `${prefix}${process.pid % 100000}${(seq++).toString(36)}`.slice(0, 15);
}

export class Netns {
  private constructor(readonly name: string) {}

  /** Creates a namespace with loopback up; deleted at teardown. */
  static async create(prefix = 'cdt'): Promise<Netns> {
    const name = uniqueName(prefix);
    await runOk('ip', ['netns', 'add', name]);
    onTeardown(`netns ${name}`, async () => {
      await run('ip', ['netns', 'del', name]);
    });
    const ns = new Netns(name);
    await ns.ok('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Path for nsenter --net=... (what PrivateDockerd's netns option uses). */
  get path(): string {
    return `/var/run/netns/${this.name}`;
  }

  exec(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  ok(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return runOk('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** Enables IPv4 (and IPv6) forwarding: the namespace routes like a host. */
  async forwarding(): Promise<void> {
    await this.ok('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await this.ok('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
  }
}

export type Side = Netns | 'root';

export interface LinkEnd {
  side: Side;
  ifName: string;
  /** Address with prefix, e.g. 192.0.2.1/24. */
  addr?: string;
}

function nsArgs(side: Side): string[] {
  return side === 'root' ? [] : ['-n', side.name];
}

/**
 * A veth pair between two hosts, addressed and up. The pair is deleted at
 * teardown (deleting one end deletes both; a namespace's deletion does too).
 */
export async function vethLink(a: LinkEnd, b: LinkEnd): Promise<void> {
  // Both ends are born under unique names in the machine's namespace, then
  // moved and renamed: "eth0" may well exist there already.
  const [ta, tb] = [uniqueName('cdtv'), uniqueName('cdtv')];
  await runOk('ip', ['link', 'add', ta, 'type', 'veth', 'peer', 'name', tb]);
  onTeardown(`veth ${a.ifName}`, async () => {
    await run('ip', ['link', 'del', ta]);
    await run('ip', [...nsArgs(a.side), 'link', 'del', a.ifName]);
  });
  for (const [end, tmp] of [[a, ta], [b, tb]] as const) {
    if (end.side !== 'root') await runOk('ip', ['link', 'set', tmp, 'netns', end.side.name]);
    await runOk('ip', [...nsArgs(end.side), 'link', 'set', tmp, 'name', end.ifName]);
    if (end.addr) await runOk('ip', [...nsArgs(end.side), 'addr', 'add', end.addr, 'dev', end.ifName]);
    await runOk('ip', [...nsArgs(end.side), 'link', 'set', end.ifName, 'up']);
  }
}

/** `ip route replace` in a host. */
export async function addRoute(side: Side, dest: string, via: string, dev?: string): Promise<void> {
  await runOk('ip', [...nsArgs(side), 'route', 'replace', dest, 'via', via, ...(dev ? ['dev', dev] : [])]);
}
