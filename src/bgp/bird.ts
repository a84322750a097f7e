// Runs the host's BIRD: writes its config (only a config that passed
// `bird -p`), starts it in the foreground under our supervision, reloads it
// with `birdc configure`, restarts it when it dies, and stops it in a
// bounded time. Knows nothing about the datastore: it is handed config text.
import fs from 'node:fs';
import { execFile, spawn, ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { birdPaths, BirdPaths } from './paths';
import { isAlive } from '../process/pids';

export const BIRD_BIN = '/usr/sbin/bird';
export const BIRDC_BIN = '/usr/sbin/birdc';

export interface BirdSupervisorOptions {
  /** The node's state dir; BIRD's files go to <stateDir>/bird/ (see paths.ts). */
  stateDir: string;
  log: Logger;
  birdBin?: string;
  birdcBin?: string;
  /**
   * A command that runs bird in another network namespace, e.g.
   * ['nsenter', '--net=/var/run/netns/h1'] (lab hosts). It must exec bird,
   * so the child's pid is bird's. birdc needs no prefix: the control socket
   * is a file.
   */
  wrap?: string[];
  /** Restart delay after a crash: doubles from initialMs up to maxMs; reset once bird ran 30 s. */
  backoff?: { initialMs: number; maxMs: number };
  /** How long stop() waits for bird to exit before SIGKILL. Default 2000 ms. */
  stopTimeoutMs?: number;
}

export interface BirdState {
  running: boolean;
  pid?: number;
  /** Restarts after bird died on its own. */
  restarts: number;
  /** The last config that failed `bird -p` (not loaded), with BIRD's message; cleared by the next good one. */
  configError?: string;
  /** How bird last exited, when it did. */
  lastExit?: string;
}

export class BirdConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BirdConfigError';
  }
}

interface Exec {
  code: number;
  out: string;
}

function execCapture(cmd: string, args: string[], timeoutMs: number): Promise<Exec> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}`.trim() || (err ? err.message : '') });
    });
  });
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class BirdSupervisor {
  readonly paths: BirdPaths;
  private readonly log: Logger;
  private readonly bird: string;
  private readonly birdc: string;
  private readonly wrap: string[];
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly stopTimeoutMs: number;
  private child?: ChildProcess;
  private childExit?: Promise<void>;
  private stopping = false;
  private started = false;
  private restartTimer?: NodeJS.Timeout;
  private nextDelay: number;
  private state: BirdState = { running: false, restarts: 0 };
  /** Config text BIRD runs (or will run at its next start). */
  private current?: string;
  /** Serialises start/apply/stop. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: BirdSupervisorOptions) {
    this.paths = birdPaths(opts.stateDir);
    this.log = opts.log.child({ component: 'bird' });
    this.bird = opts.birdBin ?? BIRD_BIN;
    this.birdc = opts.birdcBin ?? BIRDC_BIN;
    this.wrap = opts.wrap ?? [];
    this.backoff = opts.backoff ?? { initialMs: 250, maxMs: 10_000 };
    this.nextDelay = this.backoff.initialMs;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 2000;
  }

  status(): BirdState {
    return { ...this.state, pid: this.child?.pid };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.queue.then(fn, fn);
    this.queue = r.catch(() => undefined);
    return r;
  }

  /**
   * Checks and writes `config`, then starts bird on it and waits until its
   * control socket answers. A config that fails the check throws
   * BirdConfigError (nothing starts). A BIRD left running by a node that
   * died is killed first (SIGKILL: its peers keep our routes as stale).
   */
  start(config: string): Promise<void> {
    return this.serial(async () => {
      if (this.started) throw new Error('bird supervisor already started');
      this.makeDir();
      const error = await this.check(config);
      if (error) throw new BirdConfigError(error);
      fs.renameSync(this.paths.candidate, this.paths.config);
      this.current = config;
      await this.killLeftover();
      this.started = true;
      this.stopping = false;
      try {
        await this.spawnBird();
        await this.waitForSocket(10_000);
      } catch (e) {
        // A start that failed leaves nothing running, and no restart pending.
        await this.halt(false);
        throw e;
      }
    });
  }

  /**
   * Loads a new config: a config equal to the running one does nothing; one
   * that fails `bird -p` is not loaded (the running config stays; the error
   * is logged and kept in status()); a good one replaces bird.conf and
   * `birdc configure` loads it (only changed protocols restart).
   */
  apply(config: string): Promise<{ loaded: boolean; error?: string }> {
    return this.serial(async () => {
      if (config === this.current) {
        // Back to what runs (after a refused config, say): nothing is wrong any more.
        this.state.configError = undefined;
        return { loaded: false };
      }
      const error = await this.check(config);
      if (error) return { loaded: false, error };
      fs.renameSync(this.paths.candidate, this.paths.config);
      this.current = config;
      if (!this.child) return { loaded: true }; // being restarted: it starts on the new file
      const r = await execCapture(this.birdc, ['-s', this.paths.socket, 'configure'], 10_000);
      if (r.code !== 0 || !/Reconfigur/.test(r.out)) {
        const msg = `birdc configure failed: ${r.out}`;
        this.log.error({ output: r.out }, msg);
        return { loaded: false, error: msg };
      }
      this.log.info('BIRD reconfigured');
      return { loaded: true };
    });
  }

  /** `bird -p` on a candidate file; returns BIRD's message when the config is refused. */
  private async check(config: string): Promise<string | undefined> {
    this.makeDir();
    // The config may hold BGP passwords: root only, whatever the umask
    // (the mode of writeFileSync applies only to a file it creates).
    fs.writeFileSync(this.paths.candidate, config, { mode: 0o600 });
    fs.chmodSync(this.paths.candidate, 0o600);
    const r = await execCapture(this.bird, ['-p', '-c', this.paths.candidate], 10_000);
    if (r.code === 0) {
      this.state.configError = undefined;
      return undefined;
    }
    try {
      fs.unlinkSync(this.paths.candidate);
    } catch {
      /* already gone */
    }
    const msg = `BIRD refused the new config (not loaded; the previous one keeps running): ${r.out.replace(this.paths.candidate, 'bird.conf')}`;
    this.state.configError = msg;
    this.log.error({ output: r.out }, msg);
    return msg;
  }

  /** <stateDir>/bird, root only: it holds the config (passwords) and the control socket. */
  private makeDir(): void {
    fs.mkdirSync(this.paths.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.paths.dir, 0o700);
  }

  private async killLeftover(): Promise<void> {
    let pid = 0;
    try {
      pid = Number(fs.readFileSync(this.paths.pidFile, 'utf8').trim());
    } catch {
      return;
    }
    if (!pid || !isAlive(pid)) return;
    let cmdline = '';
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return;
    }
    if (!cmdline.includes(this.paths.socket)) return; // the pid was reused by something else
    this.log.warn({ pid }, `killing a BIRD left running by an earlier node (pid ${pid})`);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 40 && isAlive(pid); i++) await sleep(50);
  }

  private async spawnBird(): Promise<void> {
    const out = fs.openSync(this.paths.log, 'a');
    // -R: graceful restart recovery. Routes this host's kernel kept from the
    // BIRD before (persist) are replaced only once the peers are back.
    const args = ['-f', '-R', '-c', this.paths.config, '-s', this.paths.socket, '-P', this.paths.pidFile];
    const [cmd, ...pre] = this.wrap.length ? this.wrap : [this.bird];
    const argv = this.wrap.length ? [...pre, this.bird, ...args] : args;
    const child = spawn(cmd!, argv, { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.child = child;
    const startedAt = Date.now();
    this.state.running = true;
    this.log.info({ pid: child.pid, config: this.paths.config }, `BIRD started (pid ${child.pid})`);
    this.childExit = new Promise<void>((resolve) => {
      const done = (how: string) => {
        if (this.child !== child) return resolve();
        this.child = undefined;
        this.state.running = false;
        this.state.lastExit = how;
        resolve();
        if (this.stopping) return;
        if (Date.now() - startedAt > 30_000) this.nextDelay = this.backoff.initialMs;
        const delay = this.nextDelay;
        this.nextDelay = Math.min(this.nextDelay * 2, this.backoff.maxMs);
        this.log.warn({ exit: how, restartInMs: delay, log: this.paths.log }, `BIRD exited (${how}); restarting in ${delay} ms`);
        this.restartTimer = setTimeout(() => {
          this.restartTimer = undefined;
          if (this.stopping) return;
          this.state.restarts++;
          this.spawnBird().catch((e) => this.log.error({ err: e }, 'restarting BIRD failed'));
        }, delay);
      };
      child.once('exit', (code, signal) => done(signal ? `killed by ${signal}` : `exit code ${code}`));
      child.once('error', (e) => done(`could not run: ${e.message}`));
    });
  }

  private async waitForSocket(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await execCapture(this.birdc, ['-s', this.paths.socket, 'show', 'status'], 2000);
      if (r.code === 0 && /BIRD/.test(r.out)) return;
      if (!this.child || Date.now() > deadline) {
        const tail = readTail(this.paths.log, 5);
        throw new Error(`BIRD did not come up (${this.state.lastExit ?? 'no answer on ' + this.paths.socket}); its log ${this.paths.log} ends:\n${tail}`);
      }
      await sleep(50);
    }
  }

  /** `birdc <args>` against this BIRD (status, diags, tests). */
  birdcCommand(args: string[], timeoutMs = 5000): Promise<Exec> {
    return execCapture(this.birdc, ['-s', this.paths.socket, ...args], timeoutMs);
  }

  /**
   * Stops bird, bounded. Graceful (the default): `birdc graceful restart`,
   * which closes the sessions without withdrawing anything, so peers keep
   * this host's routes while it is away, and this host's kernel keeps the
   * routes BIRD put there (persist). Not graceful: SIGTERM, peers withdraw.
   * Either way SIGKILL after stopTimeoutMs. Idempotent.
   */
  stop(opts: { graceful?: boolean } = {}): Promise<void> {
    return this.serial(() => this.halt(opts.graceful !== false));
  }

  /** SIGKILL at once, no restart (the node's stop bound ran out). Peers keep our routes as stale. */
  kill(): void {
    this.stopping = true;
    this.started = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.child?.kill('SIGKILL');
  }

  private async halt(graceful: boolean): Promise<void> {
    this.stopping = true;
    this.started = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = this.childExit!;
    const deadline = Date.now() + this.stopTimeoutMs;
    if (!graceful) child.kill('SIGTERM');
    else {
      const r = await execCapture(this.birdc, ['-s', this.paths.socket, 'graceful', 'restart'], Math.max(100, this.stopTimeoutMs / 2));
      if (r.code !== 0) child.kill('SIGTERM');
    }
    let t: NodeJS.Timeout | undefined;
    const timer = new Promise<'timeout'>((r) => (t = setTimeout(() => r('timeout'), Math.max(0, deadline - Date.now()))));
    const how = await Promise.race([exited.then(() => 'exited' as const), timer]);
    clearTimeout(t);
    if (how === 'timeout') {
      this.log.warn(`BIRD did not exit within ${this.stopTimeoutMs} ms: SIGKILL`);
      child.kill('SIGKILL');
      await exited;
    }
    this.log.info('BIRD stopped');
  }
}

function readTail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
