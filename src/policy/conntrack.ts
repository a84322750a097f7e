// Forgets the conntrack entries of addresses whose access was narrowed
// (conntrack-tools `conntrack -D`). The next packet of a flow that is still
// allowed is picked up again as a new flow (nf_conntrack_tcp_loose, on by
// default) and passes the rules; one that is no longer allowed meets them
// and is dropped.
import type { ToolRunner } from '../dataplane/applier/exec';
import type { FlushTarget } from './narrowed';

export interface ConntrackFlushResult {
  deleted: number;
  errors: string[];
}

/** Deletes every entry whose original source or destination is one of `targets`. Idempotent: none left is fine. */
export async function flushConntrack(run: ToolRunner, targets: FlushTarget[]): Promise<ConntrackFlushResult> {
  const res: ConntrackFlushResult = { deleted: 0, errors: [] };
  await Promise.all(
    targets.flatMap((t) =>
      (['-s', '-d'] as const).map(async (dir) => {
        const r = await run('conntrack', ['-D', '-f', t.family === 4 ? 'ipv4' : 'ipv6', dir, t.address]);
        // "N flow entries have been deleted" goes to stderr; exit 1 with 0 entries is not an error.
        const m = /(\d+) flow entr/.exec(r.stderr);
        if (m) res.deleted += Number(m[1]);
        if (r.code !== 0 && !(m && m[1] === '0')) res.errors.push(`conntrack -D ${dir} ${t.address}: exit ${r.code}: ${r.stderr.trim()}`);
      }),
    ),
  );
  return res;
}
