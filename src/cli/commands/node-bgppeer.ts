import type { Command } from 'commander';
import { BgpConfigStore, HostStore } from '../../datastore';
import { canonicalAddress } from '../../address/cidr';
import { withDatastore } from '../datastore';
import { CliError } from '../errors';
import { addHostnameOption, hostNameOf } from '../host';
import { addPasswordOptions, addShow, familyOf, parsePeerArgs, parsePeerIp, PasswordFlags, peerRow, readPassword } from './bgppeer';

/**
 * `calicoctl node bgppeer add|remove|show`: BGP peers of this host only
 * (v0.4.6), e.g. its top-of-rack router. Registered under `node`.
 */
export function registerNodeBgppeer(node: Command): void {
  const bgppeer = node.command('bgppeer').description('Manage the BGP peers of this host only');
  const hostOption = (c: Command) => addHostnameOption(c);

  addPasswordOptions(
    hostOption(
      bgppeer
        .command('add')
        .description('Add a BGP peer for this host (idempotent; a second add replaces it: AS and password)')
        .argument('<IP>', 'the peer\'s address (IPv4 or IPv6)')
        .argument('<as>', 'the word "as"')
        .argument('<AS>', 'the peer\'s AS number'),
    ),
  ).action(async (ip: string, word: string, as: string, flags: PasswordFlags, cmd: Command) => {
    const { addr, asNum } = parsePeerArgs(ip, word, as);
    const password = readPassword(flags);
    const hostname = hostNameOf(cmd).name;
    await withDatastore(cmd, async (ds) => {
      const me = await new HostStore(ds).get(hostname);
      if (me && [me.ip, me.ip6].some((a) => a && canonicalAddress(a) === addr)) {
        throw new CliError(`${addr} is this host's own address (calicoctl node --ip/--ip6 of ${hostname}): a host cannot peer with itself.`);
      }
      await new BgpConfigStore(ds).addPeer({ host: hostname }, addr, asNum, password);
    });
  });

  hostOption(bgppeer.command('remove').description('Remove a BGP peer of this host').argument('<IP>', 'the peer\'s address')).action(
    async (ip: string, _flags: unknown, cmd: Command) => {
      const addr = parsePeerIp(ip);
      const hostname = hostNameOf(cmd).name;
      const removed = await withDatastore(cmd, (ds) => new BgpConfigStore(ds).removePeer({ host: hostname }, addr));
      // Exit 0 when absent: already so.
      process.stdout.write(removed ? 'BGP peer removed from node configuration\n' : `${addr} is not a configured peer for this node: nothing to remove.\n`);
    },
  );

  const show = hostOption(bgppeer.command('show').description('List the BGP peers of this host'));
  addShow(show, async (cmd, families) => {
    const host = hostNameOf(cmd).name;
    const peers = await withDatastore(cmd, (ds) => new BgpConfigStore(ds).listPeers({ host }));
    return families.map((f) => ({ family: f, peers: peers.filter((p) => familyOf(p.ip) === f).map(peerRow) }));
  }, (f) => ({ columns: [{ header: `Node specific IPv${f} BGP Peer` }, { header: 'AS Num' }], emptyText: `No IPv${f} BGP Peers defined for this node.` }));
}
