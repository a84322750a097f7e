// Open connections of endpoints whose access was narrowed (conntrack-tools
// `conntrack -U`): their entries get the recheck bit of the conntrack mark,
// so the chains stop accepting them as ESTABLISHED and put their next
// original-direction packet through the rules again (compile.ts topChains).
// Deleting the entries instead would not do: the next packet, from either
// side, is picked up as a new flow (nf_conntrack_tcp_loose), and when the
// container speaks first its outbound rules let the "new" flow out, and the
// other side's packets ride on it as replies.
import { readFile } from 'node:fs/promises';
import ipaddr from 'ipaddr.js';
import type { ToolRunner } from '../dataplane/applier/exec';
import type { RecheckTarget } from './narrowed';

/** How /proc/net/nf_conntrack prints an address: IPv4 dotted, IPv6 as eight groups of four hex digits. */
export function conntrackSpelling(t: RecheckTarget): string {
  return t.family === 4 ? t.address : ipaddr.IPv6.parse(t.address).parts.map((p) => p.toString(16).padStart(4, '0')).join(':');
}

/** The targets that appear as a source or destination in the text of /proc/net/nf_conntrack (pure). */
export function listedIn(table: string, targets: RecheckTarget[]): RecheckTarget[] {
  return targets.filter((t) => {
    const a = conntrackSpelling(t);
    return table.includes(`src=${a} `) || table.includes(`dst=${a} `);
  });
}

/** Above this many entries the table is not read: conntrack is asked directly. */
const READ_AT_MOST = 20000;

/**
 * The targets that may have entries in this process's network namespace:
 * none when its table is empty, those /proc/net/nf_conntrack lists when it
 * is small; all of them when it cannot be read (or is large), so that
 * conntrack is asked. Reading the table costs a file read; asking conntrack
 * costs a process start, a fork of the node.
 */
export async function mayHaveFlows(targets: RecheckTarget[]): Promise<RecheckTarget[]> {
  try {
    const count = Number((await readFile('/proc/sys/net/netfilter/nf_conntrack_count', 'utf8')).trim());
    if (count === 0) return [];
    if (!(count <= READ_AT_MOST)) return targets;
    return listedIn(await readFile('/proc/net/nf_conntrack', 'utf8'), targets);
  } catch {
    return targets;
  }
}

/**
 * Runs `conntrack <op> -f <family> -s|-d <address> ...extra` for each target
 * and direction, all from one process start (exec.ts: each start forks the
 * node); counts what the tool says it did.
 */
async function eachFlow(run: ToolRunner, targets: RecheckTarget[], op: '-D' | '-U', extra: string[]): Promise<{ n: number; errors: string[] }> {
  let n = 0;
  const errors: string[] = [];
  const calls = targets.flatMap((t) =>
    (['-s', '-d'] as const).map((dir) => ({ t, dir, cmd: 'conntrack', args: [op, '-f', t.family === 4 ? 'ipv4' : 'ipv6', dir, t.address, ...extra] })),
  );
  const results = await run.many(calls);
  calls.forEach(({ t, dir }, i) => {
    const r = results[i]!;
    // "N flow entries have been deleted/updated." goes to stderr; exit 1 with 0 entries is not an error.
    const m = /(\d+) flow entr/.exec(r.stderr);
    if (m) n += Number(m[1]);
    if (r.code !== 0 && !(m && m[1] === '0')) errors.push(`conntrack ${op} ${dir} ${t.address}: exit ${r.code}: ${r.stderr.trim()}`);
  });
  return { n, errors };
}

/** Deletes every entry whose original source or destination is one of `targets` (a reused address's leftovers). */
export async function deleteFlows(run: ToolRunner, targets: RecheckTarget[]): Promise<{ deleted: number; errors: string[] }> {
  const r = await eachFlow(run, targets, '-D', []);
  return { deleted: r.n, errors: r.errors };
}

export interface ConntrackMarkResult {
  /** Entries that got the bit (those that had it already are not counted). */
  marked: number;
  errors: string[];
}

/** Sets `bit` on every entry whose original source or destination is one of `targets`. Idempotent: none left is fine. */
export async function markForRecheck(run: ToolRunner, targets: RecheckTarget[], bit: number): Promise<ConntrackMarkResult> {
  const r = await eachFlow(run, targets, '-U', ['-m', `0x${bit.toString(16)}/0x${bit.toString(16)}`]);
  return { marked: r.n, errors: r.errors };
}
