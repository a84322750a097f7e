import path from 'node:path';
import type { Command } from 'commander';
import { birdPaths } from '../../bgp/paths';
import { writeDiags } from '../../diags/collect';
import { CLI_ETCD_TIMEOUT_MS, endpointsFor, etcdConfigFor, tlsFor } from '../datastore';
import { tlsFlagArgs } from '../../etcd/tls';
import { CliError, requireRoot } from '../errors';
import { startProgress } from '../progress';
import { DEFAULT_STATE_DIR } from './node';
import { nodeFiles } from './node-detach';

/**
 * `calicoctl diags [--log-dir DIR]`: a local archive of this host's network
 * state, the node's logs and config, BIRD's view, and the datastore (secrets
 * removed). Nothing is uploaded. Whatever cannot be gathered is listed in
 * the archive's MISSING.txt and on stderr; the rest is still written.
 */
export function registerDiags(program: Command): void {
  program
    .command('diags')
    .description('Save diagnostics of this host to ./diags-YYYYmmdd_HHMMSS.tar.gz (local only; secrets removed)')
    .option('--log-dir <DIR>', 'also copy this directory of logs (2015: /var/log/calico)')
    .option('--state-dir <DIR>', 'the node\'s state directory', DEFAULT_STATE_DIR)
    .action(async (flags: { logDir?: string; stateDir: string }, cmd: Command) => {
      requireRoot('This command');
      const resolved = endpointsFor(cmd);
      const { endpoints } = resolved;
      const { tls: tlsFiles } = etcdConfigFor(cmd);
      const etcdTls = tlsFor(cmd, resolved);
      const bird = birdPaths(flags.stateDir);
      const { pidFile, logFile } = nodeFiles(flags.stateDir);
      const etcdFlag = cmd.optsWithGlobals().etcdEndpoints as string | undefined;
      process.stderr.write('Collecting diags\n');
      const progress = startProgress('Collecting diags');
      let result;
      try {
        result = await writeDiags({
          outDir: process.cwd(),
          stateDir: flags.stateDir,
          nodeLogFile: logFile,
          nodePidFile: pidFile,
          birdConfig: bird.config,
          birdLog: bird.log,
          birdSocket: bird.socket,
          logDir: flags.logDir && path.resolve(flags.logDir),
          etcdEndpoints: endpoints,
          etcdTimeoutMs: CLI_ETCD_TIMEOUT_MS,
          etcdTls,
          calicoctl: [process.execPath, process.argv[1]!],
          calicoctlArgs: [...(etcdFlag ? ['--etcd-endpoints', etcdFlag] : []), ...tlsFlagArgs(tlsFiles)],
          onPart: (what) => progress.update(`Collecting ${what}`),
        });
      } catch (e) {
        throw new CliError(`calicoctl diags: ${(e as Error).message}`);
      } finally {
        progress.stop();
      }
      for (const m of result.missing) process.stderr.write(`Missing: ${m.what} (${m.reason})\n`);
      process.stdout.write(`Diags saved to ${result.archive}\n`);
    });
}
