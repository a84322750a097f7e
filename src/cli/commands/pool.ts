import { Command, Option } from 'commander';
import { DatastoreError, IPIP_MODES, IpipMode, PoolOptions, PoolStore, PoolUsage } from '../../datastore';
import { nestingNote } from '../../address/pools';
import type { Family } from '../../address/cidr';
import { withDatastore } from '../datastore';
import { UsageError } from '../errors';
import { addOutputOption, outputFormat, renderJson, renderTable } from '../output';

/**
 * `calicoctl pool add|remove|show`: the IP pools containers get addresses
 * from. Arguments are checked before etcd is contacted (2015's
 * validate_arguments), so a typo is reported even when etcd is down.
 */
export function registerPool(program: Command): void {
  const pool = program
    .command('pool')
    .description('Manage the IP pools container addresses are allocated from (IPv4 and IPv6)');

  pool
    .command('add')
    .description(
      'Add an IP pool (the CIDR is normalised: 10.1.1.1/8 becomes 10.0.0.0/8); adding an existing pool updates its options; ' +
        'a pool inside another (or around others) is allowed: automatic addresses come from the narrower pool first',
    )
    .argument('<CIDR>', 'the pool, e.g. 10.10.0.0/16 or fd80:24e2:f998:72d6::/64')
    .option('--nat-outgoing', 'masquerade traffic from containers in this pool to destinations outside every pool')
    .option('--ipip', 'reach other hosts through an IP-in-IP tunnel (IPv4 pools only); the same as --ipip-mode always')
    .addOption(
      new Option('--ipip-mode <mode>', 'IP-in-IP towards every other host (always) or only towards hosts on another subnet (cross-subnet); implies --ipip').choices([
        ...IPIP_MODES,
      ]),
    )
    .action(async (cidr: string, flags: { natOutgoing?: boolean; ipip?: boolean; ipipMode?: IpipMode }, cmd: Command) => {
      const opts: PoolOptions = { natOutgoing: flags.natOutgoing === true, ipip: flags.ipip === true || flags.ipipMode !== undefined };
      if (flags.ipipMode) opts.ipipMode = flags.ipipMode;
      const c = parsePool(cidr, opts);
      const normalised = c.text === cidr.trim() ? '' : ` (normalised from ${cidr.trim()})`;
      const message = await withDatastore(cmd, async (ds) => {
        const store = new PoolStore(ds);
        const existing = await store.list(c.family);
        const before = existing.find((p) => p.cidr === c.text);
        const after = await store.add(c.text, opts);
        if (!before) {
          // One more line when the pool nests with existing ones (pools.ts nestingNote).
          const note = nestingNote(c, existing);
          return `Added pool ${c.text}${optionsSuffix(after)}${normalised}${note ? `\n${note}` : ''}`;
        }
        if (optionsText(before) === optionsText(after)) {
          return `Pool ${c.text}${optionsSuffix(after)} already exists${normalised}`;
        }
        return `Updated pool ${c.text}: options now ${optionsText(after) || 'none'}${normalised}`;
      });
      process.stdout.write(`${message}\n`);
    });

  pool
    .command('remove')
    .description(
      'Remove an IP pool; refused while addresses in it are allocated, unless --force (blocks inside another remaining pool stay with that pool); ' +
        'a removal that was cut short is finished by running it again',
    )
    .argument('<CIDR>', 'the pool to remove')
    .option('--force', 'remove the pool even though addresses in it are allocated (their blocks are removed too)')
    .action(async (cidr: string, flags: { force?: boolean }, cmd: Command) => {
      const c = parsePool(cidr, {});
      const message = await withDatastore(
        cmd,
        async (ds) => {
          const r = await new PoolStore(ds).removeReport(c.text, { force: flags.force === true });
          const forced = r.released ? ` (forced: ${r.released} allocated address${r.released === 1 ? '' : 'es'} released from it)` : '';
          if (r.existed) return `Removed pool ${c.text}${forced}`;
          // A removal cut short (killed after the pool key went) is finished by the next one.
          if (r.blocks) return `Pool ${c.text} was already removed; finished its removal: ${r.blocks} leftover block${r.blocks === 1 ? '' : 's'} removed${forced}`;
          return `${c.text} is not a configured pool.`;
        },
        `Removing pool ${c.text}`,
      );
      process.stdout.write(`${message}\n`);
    });

  const show = pool
    .command('show')
    .description('List the IP pools with their options and usage (allocated / capacity)')
    .addOption(new Option('--ipv4', 'IPv4 pools only').conflicts('ipv6'))
    .addOption(new Option('--ipv6', 'IPv6 pools only').conflicts('ipv4'));
  addOutputOption(show).action(async (flags: { ipv4?: boolean; ipv6?: boolean; output?: string }, cmd: Command) => {
    const format = outputFormat(flags.output);
    const families: Family[] = flags.ipv4 ? [4] : flags.ipv6 ? [6] : [4, 6];
    const pools = await withDatastore(cmd, (ds) => new PoolStore(ds).listWithUsage(families.length === 1 ? families[0] : undefined));
    if (format === 'json') {
      process.stdout.write(renderJson(pools));
      return;
    }
    process.stdout.write(families.map((f) => poolTable(f, pools.filter((p) => p.family === f))).join(''));
  });
}

/** Pure: one table per family, as 2015 printed `IPv4 CIDR` then `IPv6 CIDR`. */
export function poolTable(family: Family, pools: PoolUsage[]): string {
  return renderTable(
    [{ header: `IPv${family} CIDR` }, { header: 'Options' }, { header: 'Allocated', align: 'right' }, { header: 'Capacity', align: 'right' }],
    pools.map((p) => [p.cidr, optionsText(p), p.allocated, p.capacity]),
  );
}

/** 2015 (v0.4.9) spelling of pool options: `ipip,nat-outgoing`; cross-subnet IP-in-IP is `ipip(cross-subnet)`. */
export function optionsText(p: { ipip: boolean; ipipMode?: IpipMode; natOutgoing: boolean }): string {
  const ipip = p.ipip ? (p.ipipMode === 'cross-subnet' ? 'ipip(cross-subnet)' : 'ipip') : '';
  return [ipip, p.natOutgoing ? 'nat-outgoing' : ''].filter(Boolean).join(',');
}

function optionsSuffix(p: { ipip: boolean; ipipMode?: IpipMode; natOutgoing: boolean }): string {
  const t = optionsText(p);
  return t ? ` with ${t.replace(',', ' and ')}` : '';
}

function parsePool(cidr: string, opts: PoolOptions) {
  try {
    return PoolStore.parse(cidr, opts);
  } catch (e) {
    if (e instanceof DatastoreError) throw new UsageError(e.message.charAt(0).toUpperCase() + e.message.slice(1));
    throw e;
  }
}
