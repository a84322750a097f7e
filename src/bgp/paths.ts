import path from 'node:path';

/**
 * Where the node's BIRD keeps its files, under the node's state dir. The
 * supervisor, `calicoctl status` and `calicoctl diags` all find them here.
 */
export interface BirdPaths {
  dir: string;
  /** The config BIRD runs (only ever a config that passed `bird -p`). */
  config: string;
  /** A candidate config while it is being checked. */
  candidate: string;
  /** birdc control socket. */
  socket: string;
  pidFile: string;
  /** BIRD's own log (its stderr). */
  log: string;
  /** Present while the latest rendered config is refused by `bird -p`: BIRD's message (read by `calicoctl status`). */
  configError: string;
}

export function birdPaths(stateDir: string): BirdPaths {
  const dir = path.join(stateDir, 'bird');
  return {
    dir,
    config: path.join(dir, 'bird.conf'),
    candidate: path.join(dir, 'bird.conf.new'),
    socket: path.join(dir, 'bird.ctl'),
    pidFile: path.join(dir, 'bird.pid'),
    log: path.join(dir, 'bird.log'),
    configError: path.join(dir, 'config-error.txt'),
  };
}

/** The control socket of the node's BIRD (birdc -s). */
export function birdSocketPath(stateDir: string): string {
  return birdPaths(stateDir).socket;
}
