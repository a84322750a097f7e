import fs from 'node:fs';
import { Command, Option } from 'commander';
import { BgpConfigStore, Datastore, HostStore } from '../../datastore';
import { bgpPasswordProblem } from '../../datastore/schemas';
import { canonicalAddress, isAddress, parseAddress } from '../../address/cidr';
import type { Family } from '../../address/cidr';
import { withDatastore } from '../datastore';
import { CliError, UsageError } from '../errors';
import { addOutputOption, outputFormat, printListing, renderJson } from '../output';

/**
 * `calicoctl bgppeer ...`: BGP peers every host uses instead of (route
 * reflectors, global peers) or beside the node-to-node mesh. Arguments are
 * checked before etcd is contacted, and nothing is written when one is bad.
 */
export function registerBgppeer(program: Command): void {
  const bgppeer = program.command('bgppeer').description('Manage the BGP peers of every host: route reflectors and global peers');

  const rr = bgppeer.command('rr').description('Route reflectors: with one configured, hosts peer with it instead of with each other');
  addPasswordOptions(
    rr.command('add')
      .description('Add a route reflector (idempotent, silent; a second add replaces its password, or removes it when none is given)')
      .argument('<IP>', 'the route reflector\'s address (IPv4 or IPv6)'),
  ).action(async (ip: string, flags: PasswordFlags, cmd: Command) => {
    const addr = parsePeerIp(ip);
    const password = readPassword(flags);
    await withDatastore(cmd, async (ds) => {
      await refuseCalicoHost(ds, addr, 'a route reflector');
      await new BgpConfigStore(ds).addRouteReflector(addr, password);
    });
  });
  rr.command('remove')
    .description('Remove a route reflector')
    .argument('<IP>', 'the route reflector\'s address')
    .action(async (ip: string, _f: unknown, cmd: Command) => {
      const addr = parsePeerIp(ip);
      const removed = await withDatastore(cmd, (ds) => new BgpConfigStore(ds).removeRouteReflector(addr));
      if (!removed) process.stdout.write(`${addr} is not a configured peer.\n`);
    });
  addShow(rr.command('show').description('List the route reflectors'), async (cmd, families) => {
    const [rrs, withPassword] = await withDatastore(cmd, async (ds) => {
      const store = new BgpConfigStore(ds);
      return [await store.listRouteReflectors(), await store.routeReflectorsWithPassword()] as const;
    });
    return families.map((f) => ({
      family: f,
      peers: rrs.filter((ip) => familyOf(ip) === f).sort(cmpAddr).map((ip) => ({ ip, ...(withPassword.has(ip) ? { password: true } : {}) })),
    }));
  }, (f) => ({ columns: [{ header: `IPv${f} BGP Peer` }], emptyText: `No IPv${f} BGP Peers defined.` }));

  addPasswordOptions(
    bgppeer
      .command('add')
      .description('Add a global BGP peer: every host peers with it (v0.4.6 `bgppeer add <IP> as <AS>`); a second add replaces it (AS and password)')
      .argument('<IP>', 'the peer\'s address (IPv4 or IPv6)')
      .argument('<as>', 'the word "as"')
      .argument('<AS>', 'the peer\'s AS number'),
  ).action(async (ip: string, word: string, as: string, flags: PasswordFlags, cmd: Command) => {
    const { addr, asNum } = parsePeerArgs(ip, word, as);
    const password = readPassword(flags);
    await withDatastore(cmd, async (ds) => {
      await refuseCalicoHost(ds, addr, 'a global BGP peer');
      await new BgpConfigStore(ds).addPeer({}, addr, asNum, password);
    });
  });
  bgppeer
    .command('remove')
    .description('Remove a global BGP peer')
    .argument('<IP>', 'the peer\'s address')
    .action(async (ip: string, _f: unknown, cmd: Command) => {
      const addr = parsePeerIp(ip);
      const removed = await withDatastore(cmd, (ds) => new BgpConfigStore(ds).removePeer({}, addr));
      // Exit 0 when absent: already so.
      process.stdout.write(removed ? 'BGP peer removed from global configuration\n' : `${addr} is not a globally configured peer: nothing to remove.\n`);
    });
  addShow(bgppeer.command('show').description('List the global BGP peers'), async (cmd, families) => {
    const peers = await withDatastore(cmd, (ds) => new BgpConfigStore(ds).listPeers({}));
    return families.map((f) => ({ family: f, peers: peers.filter((p) => familyOf(p.ip) === f).map(peerRow) }));
  }, (f) => ({ columns: [{ header: `Global IPv${f} BGP Peer` }, { header: 'AS Num' }], emptyText: `No global IPv${f} BGP Peers defined.` }));
}

export interface PeerListing {
  family: Family;
  /** `password` is only ever true (one is set): a password is never shown. */
  peers: { ip: string; as?: string; password?: true }[];
}

/** A listed peer as shown: whether it has a password, never the password. */
export function peerRow(p: { ip: string; as: string; hasPassword: boolean }): PeerListing['peers'][number] {
  return { ip: p.ip, as: p.as, ...(p.hasPassword ? { password: true as const } : {}) };
}

export interface PasswordFlags {
  password?: string;
  passwordFile?: string;
}

/** --password and --password-file (the file keeps the password out of shell history and process listings). */
export function addPasswordOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--password <PASSWORD>', 'TCP MD5 password of the session (printable ASCII without " and \\, at most 80 characters)').conflicts('passwordFile'))
    .addOption(new Option('--password-file <FILE>', 'read the password from FILE ("-": standard input); one trailing newline is dropped'));
}

/** The password the flags give, checked (BIRD must be able to render it); undefined when none. */
export function readPassword(flags: PasswordFlags): string | undefined {
  let pw = flags.password;
  if (flags.passwordFile !== undefined) {
    const file = flags.passwordFile;
    try {
      pw = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (e) {
      throw new CliError(`Cannot read the BGP password from ${file === '-' ? 'standard input' : file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    pw = pw.replace(/\r?\n$/, '');
  }
  if (pw === undefined) return undefined;
  const problem = bgpPasswordProblem(pw);
  if (problem) throw new UsageError(`Invalid BGP password: ${problem}.`);
  return pw;
}

/**
 * A `show [--ipv4|--ipv6] [-o json]` listing: one table per family (both
 * when no flag is given), or `emptyText` for a family without peers.
 */
export function addShow(
  cmd: Command,
  load: (cmd: Command, families: Family[]) => Promise<PeerListing[]>,
  table: (f: Family) => { columns: { header: string }[]; emptyText: string },
): void {
  cmd.addOption(new Option('--ipv4', 'IPv4 peers only').conflicts('ipv6')).addOption(new Option('--ipv6', 'IPv6 peers only').conflicts('ipv4'));
  addOutputOption(cmd).action(async (flags: { ipv4?: boolean; ipv6?: boolean; output?: string }, c: Command) => {
    const format = outputFormat(flags.output);
    const families: Family[] = flags.ipv4 ? [4] : flags.ipv6 ? [6] : [4, 6];
    const listings = await load(c, families);
    if (format === 'json') {
      process.stdout.write(renderJson(listings.flatMap((l) => l.peers.map((p) => ({ ...p, family: l.family })))));
      return;
    }
    // A Password column ("set") only when some peer of the table has one: the 2015 tables otherwise.
    for (const l of listings) {
      const t = table(l.family);
      const withPw = l.peers.some((p) => p.password);
      const columns = withPw ? [...t.columns, { header: 'Password' }] : t.columns;
      const row = (p: PeerListing['peers'][number]) => [...(t.columns.length > 1 ? [p.ip, p.as ?? ''] : [p.ip]), ...(withPw ? [p.password ? 'set' : ''] : [])];
      printListing('table', l.peers, { ...t, columns, row });
    }
  });
}

/** A peer address: valid, and of the family the command is for; canonical text. */
export function parsePeerIp(ip: string, family?: Family): string {
  if (!isAddress(ip)) throw new UsageError(`${ip} is not a valid IP address.`);
  const addr = canonicalAddress(ip);
  const f = familyOf(addr);
  if (family && f !== family) throw new UsageError(`${addr} is an IPv${f} address, this command is for IPv${family}.`);
  return addr;
}

/** An AS number, 1..4294967295 (2015: "Invalid AS Number specified."). */
export function parseAs(as: string): string {
  const t = as.trim();
  if (!/^\d+$/.test(t) || Number(t) < 1 || Number(t) > 4294967295) {
    throw new UsageError(`Invalid AS Number specified: "${as}" (expected a number from 1 to 4294967295).`);
  }
  return String(Number(t));
}

/** `<IP> as <AS>`, every part checked (all problems reported together, as 2015's validate_arguments). */
export function parsePeerArgs(ip: string, word: string, as: string): { addr: string; asNum: string } {
  const problems: string[] = [];
  let addr = '';
  let asNum = '';
  try {
    addr = parsePeerIp(ip);
  } catch (e) {
    problems.push((e as Error).message);
  }
  if (word !== 'as') problems.push(`Expected "as" between the peer address and its AS number, got "${word}" (usage: <IP> as <AS>).`);
  try {
    asNum = parseAs(as);
  } catch (e) {
    problems.push((e as Error).message);
  }
  if (problems.length) throw new UsageError(problems.join('\n'));
  return { addr, asNum };
}

/** Route reflectors and global peers are not Calico hosts: hosts reach each other through the mesh. */
async function refuseCalicoHost(ds: Datastore, addr: string, what: string): Promise<void> {
  const host = (await new HostStore(ds).list()).find((h) => [h.ip, h.ip6].some((a) => a && canonicalAddress(a) === addr));
  if (host) {
    throw new CliError(`${addr} is the BGP address of Calico host ${host.host}: it cannot be ${what} (hosts peer with each other through the node-to-node mesh).`);
  }
}

export function familyOf(ip: string): Family {
  return parseAddress(ip).family;
}

export function cmpAddr(a: string, b: string): number {
  const x = parseAddress(a);
  const y = parseAddress(b);
  return x.family - y.family || (x.value < y.value ? -1 : x.value > y.value ? 1 : 0);
}
