// What this host's kernel says about an endpoint, read-only, for `endpoint
// show` and `policy trace --probe`: a chain's rules with their packet
// counters (`iptables -S <chain> -v`), whether an address is in a tag set
// (`ipset test`), a class set's members and their counters (`ipset save`), the route to an address (`ip route get`). Nothing here
// writes; a missing tool or chain is a fact to print, not an error.
import { execFile } from 'node:child_process';

export interface RuleCounter {
  /** The rule as `iptables -S` prints it, without the counters. */
  rule: string;
  packets: number;
  bytes: number;
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr || (err && code === -1 ? err.message : '')) });
    });
  });
}

/**
 * Parses `iptables -S <chain> -v` (pure): each `-A` line's counters, which
 * iptables prints as `-c <packets> <bytes>` among the rule's words.
 */
export function parseChainCounters(text: string): RuleCounter[] {
  const out: RuleCounter[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('-A ')) continue;
    const m = /\s-c (\d+) (\d+)/.exec(line);
    const rule = line.replace(/\s-c \d+ \d+/, '').replace(/^-A \S+ ?/, '');
    out.push({ rule, packets: m ? Number(m[1]) : 0, bytes: m ? Number(m[2]) : 0 });
  }
  return out;
}

/** A chain's rules and counters in this host's filter table, or undefined when the chain is not there. */
export async function chainCounters(family: 4 | 6, chain: string): Promise<RuleCounter[] | undefined> {
  const r = await run(family === 4 ? 'iptables' : 'ip6tables', ['-w', '-t', 'filter', '-S', chain, '-v']);
  if (r.code !== 0) return undefined;
  return parseChainCounters(r.stdout);
}

/** Whether `address` is in ipset `set`: true, false, or undefined when the set is not there (or ipset cannot run). */
export async function inIpset(set: string, address: string): Promise<boolean | undefined> {
  const r = await run('ipset', ['test', set, address]);
  if (r.code === 0) return true;
  if (/is NOT in set/.test(r.stderr)) return false;
  return undefined;
}

/**
 * The members of ipset `set` with their packet counters (a set created with
 * `counters`; 0 without), or undefined when the set is not there (or ipset
 * cannot run).
 */
export async function ipsetCounters(set: string): Promise<Map<string, number> | undefined> {
  const r = await run('ipset', ['save', set]);
  if (r.code !== 0) return undefined;
  return parseIpsetCounters(r.stdout);
}

/** `ipset save <set>`'s members and their packet counters (pure). */
export function parseIpsetCounters(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const w = line.trim().split(/\s+/);
    if (w[0] !== 'add' || w.length < 3) continue;
    const i = w.indexOf('packets');
    out.set(w[2]!, i > 0 ? Number(w[i + 1]) || 0 : 0);
  }
  return out;
}

/** `ip route get <address>` on this host, one line; or why it failed. */
export async function routeGet(address: string): Promise<string> {
  const r = await run('ip', ['route', 'get', address]);
  if (r.code !== 0) return `${address}: no route (ip route get: ${r.stderr.trim() || `exit ${r.code}`})`;
  return r.stdout.split('\n')[0]!.replace(/\s+/g, ' ').trim();
}

/** The difference of two readings of one chain (pure): rules whose packet counter moved, in chain order. */
export function countersMoved(before: RuleCounter[], after: RuleCounter[]): (RuleCounter & { index: number })[] {
  const out: (RuleCounter & { index: number })[] = [];
  after.forEach((a, i) => {
    const b = before[i];
    const base = b && b.rule === a.rule ? b : { packets: 0, bytes: 0 };
    if (a.packets > base.packets) out.push({ rule: a.rule, packets: a.packets - base.packets, bytes: a.bytes - base.bytes, index: i });
  });
  return out;
}
