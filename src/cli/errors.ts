/**
 * An error meant for the person at the terminal: printed as is (no stack) to
 * stderr, and the process exits with `exitCode` (1 by default, 2 where root is
 * required and missing, as calicoctl did in 2015).
 */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new CliError(`${what} must be run as root.`, 2);
  }
}
