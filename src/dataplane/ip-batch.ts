import { spawn, ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';

// One long-lived `ip -force -batch -` process that the node feeds commands
// through a pipe. Spawning `ip` per operation costs milliseconds of fork/exec
// on the container start path; writing a line to a running `ip` costs only the
// netlink work itself. `ip` flushes its output after every batch line, so a
// job is known finished when its sentinel line (a lookup of a device that
// cannot exist) reports its failure.

/** A name no interface has: one lookup of it always fails, marking the end of a job. */
const SENTINEL = 'link show dev cali-batch-end';
const FAILED = /^Command failed -:(\d+)$/;

export interface CommandFailure {
  index: number; // position in the job's command list
  command: string;
  message: string;
}

interface Job {
  commands: string[];
  first: number; // batch line number of commands[0]
  sentinel: number; // batch line number of the sentinel
  failures: CommandFailure[];
  resolve: (f: CommandFailure[]) => void;
  reject: (e: Error) => void;
}

export class IpBatch {
  private child?: ChildProcess;
  private lines = 0;
  private jobs: Job[] = [];
  private out = '';
  private text: string[] = [];
  private closed = false;

  constructor(private readonly log: Logger, private readonly ipPath = 'ip') {}

  /**
   * Runs the commands in order (a failing one does not stop the rest) and
   * resolves with the failures, empty when all succeeded. Rejects only when
   * the `ip` process itself died.
   */
  run(commands: string[]): Promise<CommandFailure[]> {
    for (const c of commands) {
      if (c.includes('\n')) throw new Error(`ip batch command contains a newline: ${JSON.stringify(c)}`);
    }
    // After close() nothing may spawn a new `ip` (a late DeleteEndpoint while the node stops).
    if (this.closed) return Promise.reject(new Error('the host dataplane is stopped'));
    const child = this.ensureChild();
    return new Promise((resolve, reject) => {
      const first = this.lines + 1;
      this.lines += commands.length + 1;
      this.jobs.push({ commands, first, sentinel: this.lines, failures: [], resolve, reject });
      child.stdin!.write(commands.join('\n') + (commands.length ? '\n' : '') + SENTINEL + '\n');
    });
  }

  /** Runs the commands and throws, naming the first failed command, unless all succeeded. */
  async runOk(commands: string[], what: string): Promise<void> {
    const failures = await this.run(commands);
    if (failures.length) {
      const f = failures[0];
      throw new Error(`${what}: "ip ${f.command}" failed: ${f.message || 'unknown error'}`);
    }
  }

  /** Ends the `ip` process once it has run what it was given; run() refuses until open(). */
  close(): void {
    this.closed = true;
    this.child?.stdin?.end();
    this.child = undefined;
  }

  /** Accepts commands again after close() (a restarted plugin). */
  open(): void {
    this.closed = false;
  }

  /** Kills the `ip` process at once (the node's stop bound ran out). */
  kill(): void {
    this.closed = true;
    this.child?.kill('SIGKILL');
    this.child = undefined;
  }

  private ensureChild(): ChildProcess {
    if (this.child) return this.child;
    // stderr joins stdout so error text and "Command failed" markers arrive in order.
    const child = spawn('sh', ['-c', `exec ${this.ipPath} -force -batch - 2>&1`], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child = child;
    this.lines = 0;
    this.out = '';
    this.text = [];
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => this.onData(d));
    child.stdin!.on('error', () => {
      /* reported through 'exit' */
    });
    child.on('error', (e) => this.onExit(child, `could not run ${this.ipPath}: ${e.message}`));
    child.on('exit', (code, signal) => this.onExit(child, `exited with ${signal ?? code}`));
    return child;
  }

  private onData(d: string): void {
    this.out += d;
    let nl: number;
    while ((nl = this.out.indexOf('\n')) >= 0) {
      const line = this.out.slice(0, nl);
      this.out = this.out.slice(nl + 1);
      const m = FAILED.exec(line);
      if (!m) {
        this.text.push(line);
        continue;
      }
      this.onFailure(Number(m[1]), this.text.join('\n').trim());
      this.text = [];
    }
  }

  private onFailure(lineNo: number, message: string): void {
    while (this.jobs.length) {
      const job = this.jobs[0];
      if (lineNo === job.sentinel) {
        this.jobs.shift();
        job.resolve(job.failures);
        return;
      }
      if (lineNo < job.sentinel) {
        const index = lineNo - job.first;
        job.failures.push({ index, command: job.commands[index] ?? '?', message });
        return;
      }
      // A sentinel we never saw fail: cannot happen with a well-behaved `ip`.
      this.jobs.shift();
      job.reject(new Error(`ip batch lost track of job ending at line ${job.sentinel}`));
    }
  }

  private onExit(child: ChildProcess, why: string): void {
    if (this.child === child) this.child = undefined;
    const jobs = this.jobs;
    this.jobs = [];
    if (!jobs.length) return;
    const tail = [...this.text, this.out].join('\n').trim();
    this.log.error({ why, tail }, 'ip batch process died');
    for (const j of jobs) {
      j.reject(new Error(`ip batch process ${why} while running "${j.commands.join('; ')}"${tail ? `: ${tail}` : ''}`));
    }
  }
}
