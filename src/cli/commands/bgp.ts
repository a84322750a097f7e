import type { Command } from 'commander';
import { meshEnabled } from '../../bgp/render';
import { BgpConfigStore } from '../../datastore';
import { withDatastore } from '../datastore';
import { addOutputOption, outputFormat, renderJson } from '../output';
import { UsageError } from '../errors';
import { addPasswordOptions, parseAs, PasswordFlags, readPassword } from './bgppeer';

/**
 * `calicoctl bgp default-node-as [AS]` and `calicoctl bgp node-mesh [on|off]`:
 * the global AS number (64511 unless set) and the node-to-node mesh. The
 * 2015 spellings `default-node-as` and `bgp-node-mesh` work too.
 */
export function registerBgp(program: Command): void {
  const bgp = program.command('bgp').description('Global BGP settings: the default AS number and the node-to-node mesh');
  for (const [parent, name] of [[bgp, 'default-node-as'], [program, 'default-node-as']] as const) {
    addOutputOption(
      parent
        .command(name, parent === program ? { hidden: true } : {})
        .description('Show or set the AS number of every host without its own (calicoctl node --as); default 64511')
        .argument('[AS]', 'the AS number, 1 to 4294967295'),
    ).action(defaultNodeAs);
  }
  for (const [parent, name] of [[bgp, 'node-mesh'], [program, 'bgp-node-mesh']] as const) {
    addOutputOption(
      parent
        .command(name, parent === program ? { hidden: true } : {})
        .description('Show (on/off) or set the node-to-node mesh; when never set it is on unless route reflectors or global peers are configured')
        .argument('[on|off]', 'on or off'),
    ).action(nodeMesh);
  }
  addPasswordOptions(
    addOutputOption(bgp
      .command('node-mesh-password'))
      .description('Show whether the node-to-node mesh sessions have a TCP MD5 password ("set" or "not set"), set it (--password or --password-file) or unset it; every host uses it for every mesh session')
      .argument('[set|unset]', 'set or unset'),
  ).action(nodeMeshPassword);
}

async function nodeMeshPassword(action: string | undefined, flags: PasswordFlags & { output?: string }, cmd: Command): Promise<void> {
  const format = outputFormat(flags.output);
  const given = flags.password !== undefined || flags.passwordFile !== undefined;
  if (action === undefined) {
    if (given) throw new UsageError('Say "set" to set the node mesh password: calicoctl bgp node-mesh-password set --password-file <FILE>.');
    const set = await withDatastore(cmd, (ds) => new BgpConfigStore(ds).hasNodeMeshPassword());
    process.stdout.write(format === 'json' ? renderJson({ nodeMeshPassword: set }) : set ? 'set\n' : 'not set\n');
    return;
  }
  if (action === 'unset') {
    if (given) throw new UsageError('unset takes no password.');
    await withDatastore(cmd, (ds) => new BgpConfigStore(ds).setNodeMeshPassword(undefined));
    return;
  }
  if (action !== 'set') throw new UsageError(`Invalid node mesh password action "${action}": expected set or unset.`);
  const password = readPassword(flags);
  if (password === undefined) throw new UsageError('set needs the password: --password <PASSWORD> or --password-file <FILE> ("-" for standard input).');
  await withDatastore(cmd, (ds) => new BgpConfigStore(ds).setNodeMeshPassword(password));
}

async function defaultNodeAs(as: string | undefined, flags: { output?: string }, cmd: Command): Promise<void> {
  const format = outputFormat(flags.output);
  if (as === undefined) {
    const n = await withDatastore(cmd, (ds) => new BgpConfigStore(ds).getAs());
    process.stdout.write(format === 'json' ? renderJson({ defaultNodeAs: Number(n) }) : `${n}\n`);
    return;
  }
  const n = parseAs(as);
  await withDatastore(cmd, (ds) => new BgpConfigStore(ds).setAs(n));
}

async function nodeMesh(value: string | undefined, flags: { output?: string }, cmd: Command): Promise<void> {
  const format = outputFormat(flags.output);
  if (value === undefined) {
    const on = await withDatastore(cmd, async (ds) => {
      const store = new BgpConfigStore(ds);
      // What the renderer does: a setting wins; never set, the peers decide.
      const config = { nodeMesh: await store.getNodeMeshSetting(), routeReflectors: await store.listRouteReflectors(), globalPeers: await store.listPeers({}) };
      return meshEnabled({ config });
    });
    process.stdout.write(format === 'json' ? renderJson({ nodeMesh: on }) : on ? 'on\n' : 'off\n');
    return;
  }
  if (value !== 'on' && value !== 'off') throw new UsageError(`Invalid node mesh setting "${value}": expected on or off.`);
  await withDatastore(cmd, (ds) => new BgpConfigStore(ds).setNodeMesh(value === 'on'));
}
