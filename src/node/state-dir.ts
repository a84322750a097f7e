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

/** Subdirectories of the state dir whose files the node writes (BIRD's config and log). */
const OWN_SUBDIRS = ['bird'];

/**
 * Makes the state directory (0700) or takes an existing one back to 0700,
 * with its files 0600 and its directories 0700: a directory left by an
 * earlier run with a looser umask is tightened, not trusted. Only the
 * directory's own entries and the node's subdirectories are touched (the
 * 0700 directory already shuts everything below it): a --state-dir pointed
 * at a directory holding other things never has a whole tree rewritten.
 * Sockets (their mode is their owner's business) and symbolic links (never
 * followed) are left alone.
 */
export function prepareStateDir(stateDir: string): void {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const dir = path.resolve(stateDir);
  tighten(dir);
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name);
    tighten(p);
    if (OWN_SUBDIRS.includes(name) && isDir(p)) for (const sub of fs.readdirSync(p)) tighten(path.join(p, sub));
  }
}

function isDir(p: string): boolean {
  return fs.lstatSync(p).isDirectory();
}

function tighten(p: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch (e) {
    // Gone meanwhile (a member's file rotating): nothing to tighten.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const want = st.isDirectory() ? 0o700 : st.isFile() ? 0o600 : undefined;
  if (want !== undefined && (st.mode & 0o777) !== want) fs.chmodSync(p, want);
}
