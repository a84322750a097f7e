// Whether a process lives, by pid: the node's pid file, a leftover BIRD, a
// stale status file. One definition for every part that asks.

/** True when a process with this pid exists (signal 0 probes without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
