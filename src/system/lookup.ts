// The effectful half of the dependency check: is a program installed here?
import fs from 'node:fs';
import path from 'node:path';
import { describeMissing, findMissing, NodePlan, requirementsFor } from './deps';

/** An absolute path that is an executable file, or a bare name found so on PATH. */
export function programFound(program: string, pathVar: string = process.env.PATH ?? ''): boolean {
  const candidates = path.isAbsolute(program) ? [program] : pathVar.split(path.delimiter).filter(Boolean).map((d) => path.join(d, program));
  return candidates.some((c) => {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      return fs.statSync(c).isFile();
    } catch {
      return false;
    }
  });
}

/** Undefined when everything the plan runs is installed, else the message naming each missing program and its package. */
export function checkSystemDeps(plan: NodePlan, pathVar: string = process.env.PATH ?? ''): string | undefined {
  const missing = findMissing(requirementsFor(plan), (p) => programFound(p, pathVar), (p) => fs.existsSync(p));
  return missing.length ? describeMissing(missing, plan) : undefined;
}
