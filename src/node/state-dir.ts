// The node's state directory (pid file, log, node id, status file, BIRD's
// config and socket, the embedded etcd member's data and sockets): root's
// alone, whatever the umask the node was started with.
import fs from 'node:fs';
import path from 'node:path';

/** Pid file, log file (with --detach), BIRD and the embedded etcd data live here. */
export const DEFAULT_STATE_DIR = '/var/lib/calico';

/**
 * The node's umask: every file it (and its children, etcd and BIRD) creates
 * is 0600, every directory and socket 0700, whatever umask the shell or the
 * init system gave it. Files meant for others (the proxy's socket) get their
 * mode explicitly.
 */
export const NODE_UMASK = 0o077;

/**
 * Makes the state directory (0700) or takes an existing one back to 0700,
 * its directories to 0700 and its files to 0600: a directory left by an
 * earlier run with a looser umask is tightened, not trusted. Symbolic links
 * are left alone (never followed).
 */
export function prepareStateDir(stateDir: string): void {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  tighten(path.resolve(stateDir), 0);
}

function tighten(p: string, depth: number): void {
  const st = fs.lstatSync(p);
  if (st.isSymbolicLink()) return;
  const want = st.isDirectory() ? 0o700 : st.isSocket() ? st.mode & 0o700 : 0o600;
  if ((st.mode & 0o777) !== want) fs.chmodSync(p, want);
  if (!st.isDirectory() || depth > 8) return;
  for (const name of fs.readdirSync(p)) {
    try {
      tighten(path.join(p, name), depth + 1);
    } catch (e) {
      // A file that went away meanwhile (a member's WAL rotating) needs no tightening.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}
