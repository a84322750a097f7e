import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { CliError } from '../errors';
import { parseAddress } from '../../listen/address';
import { isAlive } from '../../process/pids';

/** Files of a detached node, under --state-dir. */
export function nodeFiles(stateDir: string): { pidFile: string; logFile: string } {
  return { pidFile: path.join(stateDir, 'calico-node.pid'), logFile: path.join(stateDir, 'calico-node.log') };
}


/** The pid of a running detached node, if its pid file names a live process. */
export function runningNodePid(stateDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(nodeFiles(stateDir).pidFile, 'utf8').trim());
    return pid > 0 && isAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A foreground node records its pid too (a detached one was recorded by its
 * parent), so `calicoctl node stop` finds it; refuses when another live node
 * uses this state directory.
 */
export function claimPidFile(stateDir: string): void {
  const running = runningNodePid(stateDir);
  if (running && running !== process.pid) throw new CliError(alreadyRunning(running));
  fs.mkdirSync(stateDir, { recursive: true });
  fs.writeFileSync(nodeFiles(stateDir).pidFile, `${process.pid}\n`);
}

function alreadyRunning(pid: number): string {
  return `calicoctl node is already running (pid ${pid}); stop it with: calicoctl node stop (or kill ${pid})`;
}

/** Removes the pid file if it still names this process (idempotent). */
export function removeOwnPidFile(stateDir: string): void {
  const { pidFile } = nodeFiles(stateDir);
  try {
    if (Number(fs.readFileSync(pidFile, 'utf8').trim()) === process.pid) fs.unlinkSync(pidFile);
  } catch {
    /* already gone */
  }
}

function canConnect(listen: string): Promise<boolean> {
  const a = parseAddress(listen, '--listen', 2377);
  return new Promise((resolve) => {
    const s = a.kind === 'unix' ? net.connect({ path: a.path }) : net.connect({ host: a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host, port: a.port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * --detach: the same command runs again without --detach as a session leader,
 * its output appended to the log file; the parent records its pid and returns
 * once the proxy accepts connections (or reports the child's last log lines).
 */
export async function detach(stateDir: string, listen: string, argv: string[]): Promise<number> {
  const running = runningNodePid(stateDir);
  if (running) throw new CliError(alreadyRunning(running));
  fs.mkdirSync(stateDir, { recursive: true });
  const { pidFile, logFile } = nodeFiles(stateDir);
  const out = fs.openSync(logFile, 'a');
  const args = argv.slice(1).filter((a) => a !== '--detach' && a !== '-d');
  const child = spawn(argv[0], args, { detached: true, stdio: ['ignore', out, out], env: { ...process.env, CALICO_NODE_DETACHED: '1' } });
  fs.closeSync(out);
  fs.writeFileSync(pidFile, `${child.pid}\n`);
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? 1));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && exited === null) {
    if (await canConnect(listen)) {
      child.unref();
      return child.pid!;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (exited === null) child.kill('SIGTERM');
  try {
    fs.unlinkSync(pidFile);
  } catch {
    /* already gone */
  }
  const tail = fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-10).join('\n');
  throw new CliError(`calicoctl node did not come up (see ${logFile}):\n${tail}`);
}
