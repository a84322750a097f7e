// Which calicoctl this is: the package's version (package.json) and the
// source it was built from (dist/src/build-info.json, written by
// scripts/build-info.js at build and pack time).
import fs from 'node:fs';
import path from 'node:path';

/** The package root: dist/src/version/ -> ../../.. (the same from a checkout and an installed package). */
const PACKAGE_ROOT = path.join(__dirname, '..', '..', '..');
const BUILD_INFO = path.join(__dirname, '..', 'build-info.json');

export interface BuildInfo {
  /** Short git commit, or "unknown" when built outside a git checkout. */
  commit: string;
  /** The checkout had uncommitted changes to tracked files. */
  dirty: boolean;
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** package.json's version ("unknown" if it cannot be read). */
export function packageVersion(): string {
  const v = readJson(path.join(PACKAGE_ROOT, 'package.json'))?.version;
  return typeof v === 'string' ? v : 'unknown';
}

export function buildInfo(): BuildInfo {
  const b = readJson(BUILD_INFO);
  return { commit: typeof b?.commit === 'string' ? b.commit : 'unknown', dirty: b?.dirty === true };
}
