// One long-lived `ipset -exist -` (ipset's interactive mode) for the
// applier's member changes: an endpoint that joins or leaves a class already
// here is set members only, and starting a process for them (a fork of the
// node, then ipset) cost more than the change itself. Interactive mode runs
// each line as it reads it and prints its prompt, "ipset> ", before reading
// the next; with its errors on the same pipe, a batch of N lines is done when
// the prompt has come N more times, and whatever else came meanwhile is the
// batch's errors (ipset runs under `stdbuf -o0`, or stdio would hold the
// prompts back on a pipe). `-exist`: adding a member that is there, deleting
// one that is not, or creating a set that is there as asked, is no error (the
// outcome is the one wanted). Members, the creation of a new class's sets and
// the destruction of stale sets go here; a refresh (fill a temporary set,
// swap) stays with `ipset restore`.
import { spawn, type ChildProcess } from 'node:child_process';
import type { ToolResult } from './exec';

export const IPSET_PROMPT = 'ipset> ';

/**
 * Splits what interactive mode printed into prompts and the other text
 * between them (pure): `rest` is a trailing piece that may still become a
 * prompt when more arrives.
 */
export function readPrompts(buf: string): { prompts: number; text: string; rest: string } {
  let prompts = 0;
  let text = '';
  let at = 0;
  for (let i = buf.indexOf(IPSET_PROMPT); i >= 0; i = buf.indexOf(IPSET_PROMPT, at)) {
    text += buf.slice(at, i);
    prompts++;
    at = i + IPSET_PROMPT.length;
  }
  let tail = buf.slice(at);
  let keep = 0;
  for (let k = Math.min(tail.length, IPSET_PROMPT.length - 1); k > 0; k--) {
    if (IPSET_PROMPT.startsWith(tail.slice(tail.length - k))) {
      keep = k;
      break;
    }
  }
  text += tail.slice(0, tail.length - keep);
  tail = tail.slice(tail.length - keep);
  return { prompts, text, rest: tail };
}

/**
 * Whether an `ipset restore` text is one the session runs: `add|del SET
 * MEMBER` (no option after a member), `create` as the applier writes it, and
 * `destroy SET`. A refresh (`swap`) stays with `ipset restore`.
 */
export function fitsSession(text: string): boolean {
  return text
    .split('\n')
    .every((l) => l === '' || /^(add|del) [^\s]+ [^\s]+$/.test(l) || /^create [^\s]+ hash:(ip|net|net,iface) family inet6? maxelem \d+( counters)?$/.test(l) || /^destroy [^\s]+$/.test(l));
}

interface Waiter {
  until: number;
  errors: string;
  resolve: (r: ToolResult) => void;
  timer: NodeJS.Timeout;
}

export class IpsetSession {
  private child?: ChildProcess;
  private pending = '';
  private prompts = 0;
  private sent = 0;
  private waiter?: Waiter;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: { netns?: string; timeoutMs?: number }) {}

  /** Runs lines that fitsSession accepts; code 0 when every line succeeded, else 1 with the errors (the lines before and after an error still ran). */
  apply(text: string): Promise<ToolResult> {
    const lines = text.split('\n').filter((l) => l !== '');
    if (!fitsSession(text)) return Promise.resolve({ code: 2, stdout: '', stderr: 'ipset session takes add, del, create and destroy lines only' });
    const run = this.queue.then(() => this.batch(lines));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Starts the process ahead of the first batch (idempotent). */
  open(): void {
    if (!this.child) this.start();
  }

  /** Ends the process (idempotent); the next apply starts another. */
  close(): void {
    const child = this.child;
    this.child = undefined;
    child?.stdin?.end();
  }

  private batch(lines: string[]): Promise<ToolResult> {
    if (!lines.length) return Promise.resolve({ code: 0, stdout: '', stderr: '' });
    const child = this.child ?? this.start();
    return new Promise((resolve) => {
      const timeoutMs = this.o.timeoutMs ?? 30000;
      this.sent += lines.length;
      const timer = setTimeout(() => {
        this.kill();
        this.settle(null, `ipset session: no answer to ${lines.length} line(s) within ${timeoutMs} ms`);
      }, timeoutMs);
      this.waiter = { until: this.sent + 1, errors: '', resolve, timer };
      child.stdin!.write(lines.join('\n') + '\n');
      this.check();
    });
  }

  private start(): ChildProcess {
    // stdbuf (coreutils): ipset's prompt goes through stdio, which holds it back on a pipe.
    const argv = [...(this.o.netns ? ['ip', 'netns', 'exec', this.o.netns] : []), 'stdbuf', '-o0', 'ipset', '-exist', '-'];
    // Errors on the prompts' pipe, so that their order says which batch they belong to.
    const child = spawn('sh', ['-c', 'exec "$@" 2>&1', 'sh', ...argv], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child = child;
    this.pending = '';
    this.prompts = 0;
    this.sent = 0;
    child.stdin!.on('error', () => undefined);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => {
      if (child !== this.child) return;
      const r = readPrompts(this.pending + s);
      this.pending = r.rest;
      this.prompts += r.prompts;
      if (this.waiter) this.waiter.errors += r.text;
      this.check();
    });
    const gone = (why: string) => {
      if (child !== this.child) return;
      this.child = undefined;
      this.settle(null, `${this.waiter?.errors ?? ''}ipset session ended: ${why}`);
    };
    child.on('error', (e) => gone(`cannot run ipset: ${e.message}`));
    child.on('close', (code, signal) => gone(signal ? `killed by ${signal}` : `exit ${code}`));
    return child;
  }

  private check(): void {
    const w = this.waiter;
    if (w && this.prompts >= w.until) this.settle(w.errors.trim() ? 1 : 0, w.errors);
  }

  private settle(code: number | null, stderr: string): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    clearTimeout(w.timer);
    w.resolve({ code, stdout: '', stderr });
  }

  private kill(): void {
    const child = this.child;
    this.child = undefined;
    child?.kill('SIGKILL');
  }
}
