import { execFile } from 'node:child_process';
import { Command } from 'commander';
import { BIRD_BIN } from '../../bgp/bird';
import { Datastore, LayoutStore, LAYOUT_VERSION } from '../../datastore';
import { ETCD_BINARY } from '../../etcd/embedded';
import { buildInfo, BuildInfo, packageVersion } from '../../version/build';
import { addEtcdOptions, datastoreFor } from '../datastore';

/** What `calicoctl version` reports; each field already worded for the reader. */
export interface VersionFacts {
  package: string;
  build: BuildInfo;
  /** "2.0.12", or "not installed (/usr/sbin/bird)". */
  bird: string;
  etcd: string;
  /** "1", "none yet (no node has started on this datastore)", or why it could not be read. */
  layout: string;
  etcdEndpoints: string[];
}

/** Pure: `bird --version` prints "BIRD version 2.0.12" (on stderr). */
export function birdVersionFrom(output: string): string | undefined {
  return /BIRD version (\S+)/.exec(output)?.[1];
}

/** Pure: `etcd --version` prints "etcd Version: 3.4.23" first. */
export function etcdVersionFrom(output: string): string | undefined {
  return /etcd Version: (\S+)/.exec(output)?.[1];
}

/** Pure: the text of `calicoctl version`. */
export function formatVersion(f: VersionFacts): string {
  const build = f.build.commit === 'unknown' ? 'unknown' : `${f.build.commit}${f.build.dirty ? ' (with uncommitted changes)' : ''}`;
  return [
    `calicoctl version ${f.package}`,
    `build:            ${build}`,
    `BIRD:             ${f.bird}`,
    `etcd:             ${f.etcd}`,
    `datastore layout: ${f.layout} (this calicoctl knows up to ${LAYOUT_VERSION}; etcd at ${f.etcdEndpoints.join(', ')})`,
    '',
  ].join('\n');
}

/** A binary's version from its --version output; "not installed" when it is absent. */
function binaryVersion(bin: string, parse: (out: string) => string | undefined): Promise<string> {
  return new Promise((resolve) => {
    execFile(bin, ['--version'], { timeout: 3000 }, (err, stdout, stderr) => {
      const v = parse(`${stdout}\n${stderr}`);
      if (v) return resolve(v);
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return resolve(`not installed (${bin})`);
      resolve(`unknown (${bin} --version: ${(err?.message ?? stderr ?? stdout).split('\n')[0]})`);
    });
  });
}

async function layoutVersion(ds: Datastore): Promise<string> {
  try {
    const v = await new LayoutStore(ds).read();
    return v === undefined ? 'none yet (no node has started on this datastore)' : v;
  } catch (e) {
    const m = (e as Error).message;
    return /unreachable|UNAVAILABLE|deadline/i.test(m) ? 'unknown (etcd does not answer)' : `unknown (${m.split('\n')[0]!.slice(0, 160)})`;
  } finally {
    ds.close();
  }
}

/**
 * The facts, reading etcd where every other command would (--etcd-endpoints,
 * $ETCD_ENDPOINTS, the embedded member's socket, the TLS files) for the layout version.
 */
export async function versionFacts(cmd: Command): Promise<VersionFacts> {
  const { ds, resolved } = datastoreFor(cmd, 2000);
  const [bird, etcd, layout] = await Promise.all([
    binaryVersion(BIRD_BIN, birdVersionFrom),
    binaryVersion(ETCD_BINARY, etcdVersionFrom),
    layoutVersion(ds),
  ]);
  return { package: packageVersion(), build: buildInfo(), bird, etcd, layout, etcdEndpoints: resolved.endpoints };
}

/**
 * Pure: whether the arguments (after the program name) ask for the version
 * (`--version` or `-V` anywhere before a lone `--`), and the global
 * --etcd-endpoints they give, if any.
 */
export function versionRequest(args: string[]): { etcdEndpoints?: string } | undefined {
  let etcdEndpoints: string | undefined;
  let wanted = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (a === '--version' || a === '-V') wanted = true;
    else if (a === '--etcd-endpoints') etcdEndpoints = args[++i];
    else if (a.startsWith('--etcd-endpoints=')) etcdEndpoints = a.slice('--etcd-endpoints='.length);
  }
  return wanted ? { etcdEndpoints } : undefined;
}

/**
 * `calicoctl ... --version`: prints the versions; main.ts calls it before
 * commander parses the command line, so only the etcd options are read from it.
 */
export async function printVersion(args: string[]): Promise<void> {
  const cmd = addEtcdOptions(new Command('calicoctl')).option('--state-dir <DIR>').allowUnknownOption().allowExcessArguments().exitOverride();
  cmd.parse(args, { from: 'user' });
  await printVersionFor(cmd);
}

async function printVersionFor(cmd: Command): Promise<void> {
  process.stdout.write(formatVersion(await versionFacts(cmd)));
}

/**
 * `calicoctl version`, and `--version` on every command (main.ts answers it
 * before parsing, so `calicoctl node --version` prints this too rather than
 * starting a node). The option is listed on each command's help.
 */
export function registerVersion(program: Command): void {
  program
    .command('version')
    .description('Print the versions of calicoctl, its build, BIRD, etcd and the datastore layout')
    .action((_opts: unknown, command: Command) => printVersionFor(command));
  const add = (c: Command) => {
    c.option('-V, --version', 'print the versions (as `calicoctl version`) and exit');
    for (const sub of c.commands) add(sub);
  };
  add(program);
}
