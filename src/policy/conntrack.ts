// Open connections of endpoints whose access was narrowed (conntrack-tools
// `conntrack -U`): their entries get the recheck bit of the conntrack mark,
// so the chains stop accepting them as ESTABLISHED and put their next
// original-direction packet through the rules again (compile.ts topChains).
// Deleting the entries instead would not do: the next packet, from either
// side, is picked up as a new flow (nf_conntrack_tcp_loose), and when the
// container speaks first its outbound rules let the "new" flow out, and the
// other side's packets ride on it as replies.
import type { ToolRunner } from '../dataplane/applier/exec';
import type { RecheckTarget } from './narrowed';

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
