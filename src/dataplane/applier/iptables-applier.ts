// The one kernel applier: holds every owner's desired state and a model of
// the kernel, plans the difference for our objects only, and runs it in
// order: create/refresh sets -> program chains (IPv4 and IPv6 side by side)
// -> destroy stale sets.
//
// Passes are batched: set() asks for one within minIntervalMs of the last,
// flush() asks for one now and resolves when a pass that started after it
// succeeded. Every resyncMs a pass re-reads the kernel and repairs what
// someone else flushed or deleted. A failed pass is logged, with what failed
// on what, and retried with backoff.
//
// The model: only the first pass, the periodic resync and a pass after a
// failure read the kernel (iptables-save, ip6tables-save, ipset save; and
// read it back after writing, to learn its spelling). Every other pass plans
// against what the last pass left (plan.ts expectedKernel), where each chain
// and set remembers the desired list it was written from: an owner handing
// the same lists again costs one comparison per chain, and a change writes
// one `iptables-restore --noflush` per family holding only the changed
// chains (a few rules in or out of a long chain as -D/-I in place) and one
// `ipset restore` holding only the changed members. With 1,000 endpoints,
// reading the ruleset costs far more than writing one endpoint's change
// (docs/policy.md, "How one endpoint's change reaches the kernel").
// Someone else's change is therefore repaired at the next resync, not at
// the next set().
import type { Logger } from 'pino';
import type { Component } from '../../lifecycle/component';
import { toolRunner, type ToolResult, type ToolRunner } from './exec';
import { ApplierError, checkDestroyed, checkResult, describe, isProgram, membersOnly, toolCall } from './steps';
import { parseIpsetSave } from './ipset-save';
import { fitsSession, IpsetSession } from './ipset-session';
import { parseIptablesSave, SavedTables } from './iptables-save';
import { emptyMerged, mergeStates, MergedState } from './merge';
import { expectedKernel, KernelState, Plan, planApply, Step } from './plan';
import { RuleSpelling } from './spelling';
import type { DesiredState, IpFamily, KernelApplier } from './types';

export { ApplierError } from './steps';

export interface IptablesApplierOptions {
  log: Logger;
  /** Run every tool inside this network namespace (tests); default: the node's own. */
  netns?: string;
  /** Re-read the kernel and repair this often (default 5000 ms: an external flush is back within 10 s). */
  resyncMs?: number;
  /** Least time between the end of one pass and the start of the next one that set() asks for (default 50 ms: a change that follows a pass closely waits at most that long, and a burst of changes still makes at most ~20 passes a second). */
  minIntervalMs?: number;
  /** Retry backoff after a failed pass: first delay, doubling up to maxRetryMs (defaults 250 ms, 10 s). */
  retryMs?: number;
  maxRetryMs?: number;
  /**
   * Owners that must each have called set() once before the kernel is touched:
   * until every owner has said what it wants, a chain of one it has not heard
   * from would look stale and be deleted (policy's chains while only NAT spoke).
   */
  expectOwners?: string[];
  /** Kill a tool that runs longer than this (default 30 s). */
  toolTimeoutMs?: number;
}

export interface ApplierStats {
  passes: number;
  applied: number;
  failed: number;
  lastPassAt?: number;
  lastPassMs?: number;
  lastError?: string;
  lastErrorAt?: number;
}

/** The rules' reads, both families, side by side. */
const SAVES = [
  { cmd: 'iptables-save', args: [] },
  { cmd: 'ip6tables-save', args: [] },
];

type Why = 'resync' | 'set' | 'now';
const URGENCY: Record<Why, number> = { resync: 0, set: 1, now: 2 };

interface Waiter {
  /** Resolved by the first pass numbered above this. */
  after: number;
  resolve(): void;
  reject(e: Error): void;
}

export class IptablesApplier implements KernelApplier, Component {
  readonly name = 'kernel-applier';
  private readonly run: ToolRunner;
  private readonly sets: IpsetSession;
  private readonly spelling = new RuleSpelling();
  private readonly states = new Map<string, DesiredState>();
  private merged: MergedState = emptyMerged();
  private waiters: Waiter[] = [];
  private passes = 0;
  /**
   * Counts since construction (passes run, passes that changed the kernel,
   * passes that failed) and the last pass: when it ended (epoch ms), how long
   * it took, and the error of the last failed pass (cleared by a success).
   */
  readonly stats: ApplierStats = { passes: 0, applied: 0, failed: 0 };
  private running?: Promise<void>;
  private again?: Why;
  private timer?: NodeJS.Timeout;
  private timerDue = Infinity;
  private resync?: NodeJS.Timeout;
  private lastEnd = 0;
  private failures = 0;
  private retryAt = 0;
  private started = false;
  private stopped = false;
  private v6Missing = false;
  private readonly warned = new Set<string>();
  private heldLogged = false;
  /** The kernel as the last successful pass left it (undefined: read it). */
  private kernel?: KernelState;
  /** The running pass has taken the desired state it applies (flush() calls from then on need the next pass). */
  private taken = true;
  /** The next pass reads the kernel instead of trusting `kernel`. */
  private resyncDue = true;

  constructor(private readonly o: IptablesApplierOptions) {
    this.run = toolRunner({ netns: o.netns, timeoutMs: o.toolTimeoutMs });
    this.sets = new IpsetSession({ netns: o.netns, timeoutMs: o.toolTimeoutMs });
  }

  /** Throws (and records nothing) when the state is wrong in itself or clashes with another owner's. */
  set(owner: string, desired: DesiredState): void {
    const next = new Map(this.states);
    next.set(owner, desired);
    this.merged = mergeStates(next);
    this.states.set(owner, desired);
    this.request('set');
  }

  flush(): Promise<void> {
    if (this.stopped) return Promise.reject(new Error('kernel applier is stopped'));
    return new Promise((resolve, reject) => {
      // A pass still reading the kernel has not taken the desired state yet: it covers this call too.
      this.waiters.push({ after: this.running && !this.taken ? this.passes - 1 : this.passes, resolve, reject });
      this.request('now');
    });
  }

  /** A pass now that re-reads the kernel and repairs it, as the repair timer's does; resolves when it (or a later pass) succeeded. */
  repairNow(): Promise<void> {
    this.resyncDue = true;
    return this.flush();
  }

  /** The first pass (reads the kernel, applies what owners set so far), then the periodic repair. Never throws: a failure is logged and retried. */
  async start(): Promise<void> {
    this.started = true;
    this.stopped = false;
    // The ipset session's process is started now, not by the first container's Join.
    this.sets.open();
    const every = this.o.resyncMs ?? 5000;
    this.resync = setInterval(() => this.request('resync'), every);
    this.resync.unref();
    if (this.held()) {
      this.request('now');
      return;
    }
    await this.flush().catch(() => undefined);
  }

  /** Stops the timers and waits for a pass in flight. Leaves everything in the kernel: running containers keep their NAT and policy. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resync) clearInterval(this.resync);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
    await this.running?.catch(() => undefined);
    this.sets.close();
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach((w) => w.reject(new Error('kernel applier stopped before applying')));
  }

  /**
   * Removes every chain, hook and ipset of ours, whoever set it (for
   * `calicoctl node stop --force`); rules and sets that are not ours stay.
   * Stops the applier first, so nothing is put back. Idempotent.
   */
  async removeAll(): Promise<void> {
    await this.stop();
    this.states.clear();
    this.merged = emptyMerged();
    this.resyncDue = true;
    try {
      await this.pass(() => undefined);
    } finally {
      this.sets.close();
    }
  }

  /** For the node's status file (`calicoctl status`). */
  status(): Record<string, unknown> {
    return { ...this.stats, waitingFor: this.held() || undefined };
  }

  private held(): string[] | false {
    const missing = (this.o.expectOwners ?? []).filter((o) => !this.states.has(o));
    return missing.length ? missing : false;
  }

  private request(why: Why): void {
    if (why === 'resync') this.resyncDue = true;
    if (!this.started || this.stopped) return;
    const missing = this.held();
    if (missing) {
      if (!this.heldLogged) this.o.log.info({ waitingFor: missing }, 'kernel applier waits for every owner before touching the kernel');
      this.heldLogged = true;
      return;
    }
    if (this.running) {
      // One more pass once this one ends, as urgent as the most urgent request.
      if (!this.again || URGENCY[why] > URGENCY[this.again]) this.again = why;
      return;
    }
    const now = Date.now();
    // flush() goes now; everything else waits for the batching interval and any retry backoff.
    const delay = why === 'now' ? 0 : Math.max(why === 'set' ? this.lastEnd + (this.o.minIntervalMs ?? 50) - now : 0, this.retryAt - now, 0);
    const due = now + delay;
    if (this.timer && this.timerDue <= due) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerDue = Infinity;
      this.running = this.runPass().finally(() => {
        this.running = undefined;
        this.lastEnd = Date.now();
        // After a failure a retry is due even if nobody asks (backoff applies).
        const again = this.again ?? (this.failures ? 'resync' : undefined);
        this.again = undefined;
        if (again) this.request(again);
      });
    }, delay);
  }

  private async runPass(): Promise<void> {
    const number = ++this.passes;
    this.stats.passes++;
    const settle = (e?: Error) => {
      const done = this.waiters.filter((w) => w.after < number);
      this.waiters = this.waiters.filter((w) => w.after >= number);
      done.forEach((w) => (e ? w.reject(e) : w.resolve()));
    };
    const started = process.hrtime.bigint();
    const ended = () => {
      this.stats.lastPassAt = Date.now();
      this.stats.lastPassMs = Number(process.hrtime.bigint() - started) / 1e6;
    };
    try {
      // Whoever waits for this pass is let go as soon as the kernel holds the
      // state (an endpoint's Join), before the bookkeeping after it (the
      // read-back after a resync, the model of the kernel).
      await this.pass(() => settle());
      ended();
      this.stats.lastError = undefined;
      if (this.failures) this.o.log.info({ failedPasses: this.failures }, 'kernel applier: applied after failed passes');
      this.failures = 0;
      this.retryAt = 0;
      settle();
    } catch (e) {
      ended();
      this.failures++;
      this.stats.failed++;
      this.stats.lastError = (e as Error).message;
      this.stats.lastErrorAt = Date.now();
      const wait = Math.min((this.o.retryMs ?? 250) * 2 ** (this.failures - 1), this.o.maxRetryMs ?? 10000);
      this.retryAt = Date.now() + wait;
      this.o.log.error({ err: e, failures: this.failures, retryInMs: wait }, 'kernel applier: pass failed');
      settle(e as Error);
    }
  }

  /**
   * One pass: read the kernel (or, between resyncs, trust what the last pass
   * left), plan, apply; after a read, read back to learn the kernel's spelling.
   */
  private async pass(applied: () => void): Promise<void> {
    const started = Date.now();
    const fresh = this.resyncDue || !this.kernel;
    this.resyncDue = false;
    // Until this pass succeeds, nothing is known: a failure anywhere makes the next pass read.
    const trusted = this.kernel;
    this.kernel = undefined;
    this.taken = false;
    const actual = fresh ? await this.read() : trusted!;
    // Taken after the read (which takes long with many chains): what set() and
    // flush() asked for meanwhile (an endpoint's Join) goes in this pass, not
    // the one after it.
    const desired = this.merged;
    this.taken = true;
    const plan = planApply(desired, actual, this.spelling.spell);
    this.warn(plan);
    if (!plan.steps.length) {
      // The same kernel, with each chain marked as written from its desired rule list (the next pass compares by reference).
      this.kernel = fresh ? expectedKernel(desired, actual, this.spelling.spell) : actual;
      this.o.log.debug({ ms: Date.now() - started, read: fresh }, 'kernel applier: kernel in step');
      return;
    }
    await this.executeAll(plan.steps);
    this.stats.applied++;
    applied();
    // The waiters' continuations (promise callbacks) run before what follows.
    await new Promise<void>((r) => setImmediate(r));
    if (fresh) {
      // The rules only: the kernel prints set members as we write them (canonicalMember), and at a
      // cluster's size `ipset save` is the long part of a read. The sets are as the read before found them, and as written.
      const tables = await this.readTables();
      const misfits = this.spelling.learn(plan.written, desired, tables);
      this.spelling.retain(desired);
      misfits.forEach((m) => this.warnOnce(`kernel applier: rules do not read back one for one (the chain will be rewritten on each pass): ${m}`));
      this.kernel = expectedKernel(desired, { tables, ipsets: actual.ipsets }, this.spelling.spell);
    } else {
      // Rules never seen before keep our own text here; the next resync reads the kernel's spelling.
      this.kernel = expectedKernel(desired, actual, this.spelling.spell);
    }
    this.o.log.info({ ms: Date.now() - started, read: fresh, steps: plan.steps.map(describe) }, 'kernel applier: applied');
  }

  private async readTables(): Promise<KernelState['tables']> {
    const [v4, v6] = await this.run.many(SAVES);
    return { 4: this.savedTables(4, v4!), 6: this.savedTables(6, v6!) };
  }

  private async read(): Promise<KernelState> {
    const [v4, v6, sets] = await this.run.many([...SAVES, { cmd: 'ipset', args: ['save'] }]);
    if (sets!.code !== 0) throw new ApplierError(`ipset save failed (exit ${sets!.code}): ${sets!.stderr.trim()}`, 'ipset save', sets!.stderr);
    return { tables: { 4: this.savedTables(4, v4!), 6: this.savedTables(6, v6!) }, ipsets: parseIpsetSave(sets!.stdout) };
  }

  private savedTables(v: IpFamily, r: ToolResult): SavedTables | undefined {
    const cmd = v === 4 ? 'iptables-save' : 'ip6tables-save';
    if (r.code === 0) {
      if (v === 6 && this.v6Missing) this.o.log.info('kernel applier: IPv6 tables readable again');
      if (v === 6) this.v6Missing = false;
      return parseIptablesSave(r.stdout);
    }
    if (v === 4) throw new ApplierError(`${cmd} failed (exit ${r.code}): ${r.stderr.trim()}`, cmd, r.stderr, 4);
    // No IPv6 in this kernel (or no ip6tables): IPv4 keeps working.
    if (!this.v6Missing) this.o.log.warn({ stderr: r.stderr.trim(), exit: r.code }, 'kernel applier: IPv6 tables unavailable; only IPv4 is programmed');
    this.v6Missing = true;
    return undefined;
  }

  /**
   * In order, except that steps with nothing between them run side by side:
   * the IPv4 and IPv6 program steps (separate tables), and an ipset step that
   * only adds and deletes members of existing sets with the program steps
   * after it (no rule about to be written needs a set it creates; an
   * endpoint's own chains and its tag memberships do not depend on each other).
   */
  private async executeAll(steps: Step[]): Promise<void> {
    for (let i = 0; i < steps.length; ) {
      const group = [steps[i]!];
      const s = steps[i]!;
      if (s.kind === 'ipset-destroy') {
        // Stale sets in a row: one batch of the ipset session.
        while (steps[i + group.length]?.kind === 'ipset-destroy') group.push(steps[i + group.length]!);
        i += group.length;
        const names = group.map((g) => (g as Extract<Step, { kind: 'ipset-destroy' }>).name);
        checkDestroyed(names, await this.sets.apply(names.map((n) => `destroy ${n}\n`).join('')));
        continue;
      }
      if (s.kind === 'ipset-restore' && membersOnly(s.text)) {
        while (isProgram(steps[i + group.length]) && group.length < 3) group.push(steps[i + group.length]!);
      } else if (isProgram(s)) {
        const n = steps[i + 1];
        if (isProgram(n) && n.family !== s.family) group.push(n);
      }
      i += group.length;
      // Member changes go to the long-lived ipset process; the rest start from one process (see exec.ts: each start forks the node).
      const session = s.kind === 'ipset-restore' && fitsSession(s.text);
      const tools = session ? group.slice(1) : group;
      const [first, results] = await Promise.all([session ? this.sets.apply(s.text) : undefined, tools.length ? this.run.many(tools.map(toolCall)) : []]);
      if (first) checkResult(s, first, 'ipset -exist - (the applier\'s ipset session)');
      tools.forEach((g, k) => checkResult(g, results[k]!));
    }
  }

  private warn(plan: Plan): void {
    plan.warnings.forEach((w) => this.warnOnce(`kernel applier: ${w}`));
  }

  private warnOnce(msg: string): void {
    if (this.warned.has(msg)) return;
    // Bounded: conditions that keep changing wording must not grow it without end.
    if (this.warned.size >= 1000) this.warned.clear();
    this.warned.add(msg);
    this.o.log.warn(msg);
  }
}
