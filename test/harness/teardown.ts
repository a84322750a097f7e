import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { run } from './exec';
import { isAlive } from '../../src/process/pids';

/**
 * Everything a test starts registers its undo here; teardown runs them in reverse
 * order, even when a test failed, and keeps going past errors. Each test file
 * calls `after(teardownAll)` (see harness/index.ts).
 */
type Undo = { what: string; fn: () => Promise<void> | void };
const stack: Undo[] = [];

export function onTeardown(what: string, fn: () => Promise<void> | void): void {
  stack.push({ what, fn });
}

export async function teardownAll(): Promise<void> {
  const errors: string[] = [];
  while (stack.length) {
    const u = stack.pop()!;
    try {
      await u.fn();
    } catch (e) {
      errors.push(`${u.what}: ${(e as Error).message}`);
    }
  }
  if (errors.length) {
    // Reported, not thrown: a failed undo must not hide the test's own failure.
    console.error(`teardown problems:\n  ${errors.join('\n  ')}`);
  }
}

/** Root of every directory the harness makes; one subdirectory per started thing. */
export const HARNESS_ROOT = path.join(os.tmpdir(), 'calico-test');

/**
 * Makes a fresh directory for one started thing, records our pid in it so a
 * later run can tell a crashed run's leftovers from a live run's, and sweeps
 * leftovers of dead runs first.
 */
export async function makeRunDir(kind: string): Promise<string> {
  fs.mkdirSync(HARNESS_ROOT, { recursive: true });
  await sweepDeadRuns();
  const dir = fs.mkdtempSync(path.join(HARNESS_ROOT, `${kind}-`));
  fs.writeFileSync(path.join(dir, 'owner.pid'), String(process.pid));
  return dir;
}


/** Kills processes and unmounts what a crashed earlier run left behind. */
export async function sweepDeadRuns(): Promise<void> {
  if (!fs.existsSync(HARNESS_ROOT)) return;
  for (const name of fs.readdirSync(HARNESS_ROOT)) {
    const dir = path.join(HARNESS_ROOT, name);
    const ownerFile = path.join(dir, 'owner.pid');
    let owner = 0;
    try {
      owner = Number(fs.readFileSync(ownerFile, 'utf8'));
    } catch {
      continue;
    }
    if (owner && isAlive(owner)) continue;
    for (const f of pidFiles(dir, 4)) {
      const pid = Number(fs.readFileSync(f, 'utf8'));
      if (pid && isAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    await removeTree(dir);
  }
}

/**
 * The pid files under a run's directory, `depth` levels down (a lab's router
 * BIRD writes router/bird.pid, a node its bird/bird.pid), not into dockerd's
 * data and exec roots (image layers, mounts) nor the owner's own file.
 */
function pidFiles(dir: string, depth: number): string[] {
  const out: string[] = [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isFile() && e.name.endsWith('.pid') && e.name !== 'owner.pid') out.push(p);
    else if (e.isDirectory() && depth > 1 && e.name !== 'data' && e.name !== 'exec') out.push(...pidFiles(p, depth - 1));
  }
  return out;
}

/** Unmounts anything mounted under dir (overlay, netns, shm), then removes it. */
export async function removeTree(dir: string): Promise<void> {
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    await run('umount', ['-l', m]);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
