// Runs calicoctl's main() in this process, capturing what it writes (spawning
// a process per case is slow), against an etcd endpoint where nothing listens.
import { Command } from 'commander';
import { main } from '../../src/cli/main';
import { registerCommands } from '../../src/cli/commands';
import { registerVersion } from '../../src/cli/commands/version';
import { registerCompletion } from '../../src/cli/commands/completion';
import { addEtcdOptions } from '../../src/cli/datastore';
import { addHelp, commandPath } from '../../src/cli/help';

// Nothing listens on port 1: a case that reaches etcd fails fast instead of hanging.
export const DEAD_ETCD = 'http://127.0.0.1:1';

export async function ctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const origOut = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  const saved = { ETCD_ENDPOINTS: process.env.ETCD_ENDPOINTS, ETCD_AUTHORITY: process.env.ETCD_AUTHORITY };
  const savedExit = process.exitCode;
  process.env.ETCD_ENDPOINTS = DEAD_ETCD;
  delete process.env.ETCD_AUTHORITY;
  process.exitCode = undefined;
  // calicoctl writes strings; the test runner's own reports (serialized, Buffers) pass through, or a result
  // reported while a case runs would be swallowed.
  const hook = (key: 'stdout' | 'stderr', orig: typeof process.stdout.write) =>
    ((c: string | Uint8Array, ...rest: unknown[]) => {
      if (typeof c !== 'string') return (orig as (...a: unknown[]) => boolean)(c, ...rest);
      out[key] += c;
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = hook('stdout', origOut);
  process.stderr.write = hook('stderr', origErr);
  try {
    const code = await main(['node', 'calicoctl', ...args]);
    return { code, ...out };
  } finally {
    process.stdout.write = origOut;
    process.stderr.write = origErr;
    process.exitCode = savedExit;
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** calicoctl's command tree as main() builds it (help texts included). */
export function program(): Command {
  const p = new Command('calicoctl');
  addEtcdOptions(p);
  registerCommands(p);
  registerVersion(p);
  registerCompletion(p);
  addHelp(p);
  return p;
}

/** Every command below calicoctl with its path ("node bgppeer add"). */
export function commandPaths(p = program()): { path: string; cmd: Command }[] {
  const out: { path: string; cmd: Command }[] = [];
  const walk = (c: Command) => {
    for (const s of c.commands) {
      out.push({ path: commandPath(s), cmd: s });
      walk(s);
    }
  };
  walk(p);
  return out;
}
