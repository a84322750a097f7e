// `calicoctl diags`: gathers what a person needs to debug this host into a
// local diags-YYYYmmdd_HHMMSS.tar.gz (never uploaded). Each part is gathered
// on its own: a part that cannot be had (node down, etcd down, a tool
// missing) is named in MISSING.txt and the rest is still written. Every part
// goes through ./redact.ts first.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { Datastore, DatastoreTls } from '../datastore';
import { redactKv, redactText } from './redact';

export interface DiagsOptions {
  /** Directory the archive is written to (the current directory). */
  outDir: string;
  /** The node's state dir and the files in it (see cli/commands/node-detach.ts, bgp/paths.ts). */
  stateDir: string;
  nodeLogFile: string;
  nodePidFile: string;
  birdConfig: string;
  birdLog: string;
  birdSocket: string;
  /** --log-dir: a directory of logs copied whole (2015: /var/log/calico). */
  logDir?: string;
  etcdEndpoints: string[];
  etcdTimeoutMs: number;
  /** For https:// endpoints (read by the caller). */
  etcdTls?: DatastoreTls;
  /** How to run calicoctl itself ([node, main.js]) and the global flags (etcd endpoints) to pass it. */
  calicoctl: string[];
  calicoctlArgs: string[];
  birdc?: string;
  now?: Date;
  /** Told before each part is gathered. */
  onPart?: (what: string) => void;
}

export interface MissingPart {
  file: string;
  what: string;
  reason: string;
}

export interface DiagsResult {
  archive: string;
  files: string[];
  missing: MissingPart[];
}

/** A part that could not be gathered; its message says why. */
class Missing extends Error {}

interface Part {
  file: string;
  what: string;
  /** The part's text; throws Missing (or anything) when it cannot be had. */
  gather(): Promise<string>;
}

const MAX_FILE_BYTES = 20 * 1024 * 1024;

function exec(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ code: number; stdout: string; stderr: string; notFound: boolean }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: unknown }) | null;
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : 1) : 0,
        stdout: String(stdout),
        stderr: String(stderr),
        notFound: e?.code === 'ENOENT',
      });
    });
  });
}

/** A command's output; Missing when the command is not installed or fails without output. */
async function command(cmd: string, args: string[]): Promise<string> {
  const r = await exec(cmd, args);
  if (r.notFound) throw new Missing(`${cmd} is not installed`);
  if (r.code !== 0 && !r.stdout.trim()) throw new Missing(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || 'no output'}`);
  return r.code === 0 ? r.stdout : `${r.stdout}\n# exit ${r.code}: ${r.stderr.trim()}\n`;
}

/** A host without tunl0 (no IP-in-IP pool) has nothing missing: the part says so. */
function noTunnelIsAnAnswer(p: Promise<string>): Promise<string> {
  return p.catch((e) => {
    if (e instanceof Missing && /does not exist|Cannot find device/.test(e.message)) return 'no tunl0 on this host (no IP-in-IP pool, see docs/ipip.md)\n';
    throw e;
  });
}

/** A file's text (its last MAX_FILE_BYTES when bigger); Missing when absent. */
function readFile(file: string, what: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Missing(`no ${what} at ${file} (${(e as NodeJS.ErrnoException).code})`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, MAX_FILE_BYTES);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    return (size > len ? `# (last ${len} of ${size} bytes)\n` : '') + buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** The diags file name for a moment: diags-YYYYmmdd_HHMMSS.tar.gz (local time, as 2015). */
export function archiveName(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `diags-${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}_${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}.tar.gz`;
}

function parts(o: DiagsOptions): Part[] {
  const birdc = o.birdc ?? '/usr/sbin/birdc';
  const birdcPart = (args: string[]): Part => ({
    file: `birdc-${args.join('-')}.txt`,
    what: `birdc ${args.join(' ')}`,
    async gather() {
      if (!fs.existsSync(o.birdSocket)) throw new Missing(`no BIRD control socket at ${o.birdSocket} (is the node running?)`);
      const r = await exec(birdc, ['-s', o.birdSocket, ...args]);
      if (r.notFound) throw new Missing(`${birdc} is not installed`);
      if (r.code !== 0) throw new Missing(`BIRD did not answer on ${o.birdSocket}: ${(r.stdout + r.stderr).trim()}`);
      return r.stdout;
    },
  });
  const calicoctl = (args: string[], file: string): Part => ({
    file,
    what: `calicoctl ${args.join(' ')}`,
    async gather() {
      const [cmd, ...pre] = o.calicoctl;
      const r = await exec(cmd!, [...pre, ...args, ...o.calicoctlArgs], 30_000);
      // status exits 1 when something is down: its output says what, which is the point.
      if (!r.stdout.trim()) throw new Missing(`calicoctl ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
      return r.stdout + (r.stderr.trim() ? `\n# stderr:\n${r.stderr}` : '') + (r.code ? `\n# exit ${r.code}\n` : '');
    },
  });
  return [
    { file: 'date.txt', what: 'date', gather: async () => `${(await command('date', [])).trim()}\n${(o.now ?? new Date()).toISOString()}\n` },
    { file: 'hostname.txt', what: 'hostname', gather: async () => `${os.hostname()}\n` },
    { file: 'ip-addr.txt', what: 'ip addr', gather: () => command('ip', ['addr']) },
    { file: 'ip-route.txt', what: 'ip route', gather: () => command('ip', ['route']) },
    { file: 'ip6-route.txt', what: 'ip -6 route', gather: () => command('ip', ['-6', 'route']) },
    // IP-in-IP (docs/ipip.md): the tunnel device and the routes through it.
    { file: 'ip-tunl0.txt', what: 'ip -d link show tunl0', gather: () => noTunnelIsAnAnswer(command('ip', ['-d', 'link', 'show', 'tunl0'])) },
    { file: 'ip-route-tunl0.txt', what: 'ip -d route show dev tunl0', gather: () => noTunnelIsAnAnswer(command('ip', ['-d', 'route', 'show', 'dev', 'tunl0'])) },
    { file: 'iptables-save.txt', what: 'iptables-save', gather: () => command('iptables-save', []) },
    { file: 'ip6tables-save.txt', what: 'ip6tables-save', gather: () => command('ip6tables-save', []) },
    { file: 'ipset-list.txt', what: 'ipset list', gather: () => command('ipset', ['list']) },
    birdcPart(['show', 'protocols', 'all']),
    birdcPart(['show', 'route']),
    { file: 'node/calico-node.log', what: 'the node\'s log', gather: async () => readFile(o.nodeLogFile, 'node log') },
    { file: 'node/bird.conf', what: 'the node\'s BIRD config', gather: async () => readFile(o.birdConfig, 'BIRD config') },
    { file: 'node/bird.log', what: 'the node\'s BIRD log', gather: async () => readFile(o.birdLog, 'BIRD log') },
    { file: 'node/config.txt', what: 'the node\'s configuration', gather: async () => nodeConfig(o) },
    calicoctl(['status', '--state-dir', o.stateDir], 'calicoctl-status.txt'),
    calicoctl(['shownodes', '--detailed'], 'calicoctl-shownodes-detailed.txt'),
    { file: 'etcd-dump.jsonl', what: 'etcd dump of /calico/', gather: () => etcdDump(o) },
  ];
}

/** The node's command line (secrets redacted) and the state dir's files; never its environment. */
function nodeConfig(o: DiagsOptions): string {
  const lines = [`state dir: ${o.stateDir}`];
  let pid = 0;
  try {
    pid = Number(fs.readFileSync(o.nodePidFile, 'utf8').trim());
  } catch {
    lines.push(`pid file ${o.nodePidFile}: absent (no detached node)`);
  }
  if (pid) {
    try {
      lines.push(`node pid ${pid}: ${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ')}`);
    } catch {
      lines.push(`node pid ${pid}: not running`);
    }
  }
  if (!fs.existsSync(o.stateDir)) throw new Missing(`no node state dir at ${o.stateDir} (${lines.slice(1).join('; ')})`);
  lines.push('', 'files:');
  const walk = (dir: string, depth: number) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      const st = fs.lstatSync(p);
      lines.push(`  ${path.relative(o.stateDir, p)}${e.isDirectory() ? '/' : ''}  ${st.size} bytes  ${st.mtime.toISOString()}`);
      // The embedded etcd's data is the datastore (dumped separately), not configuration.
      if (e.isDirectory() && depth < 2 && e.name !== 'etcd') walk(p, depth + 1);
    }
  };
  walk(o.stateDir, 0);
  return lines.join('\n') + '\n';
}

async function etcdDump(o: DiagsOptions): Promise<string> {
  const ds = new Datastore({ endpoints: o.etcdEndpoints, timeoutMs: o.etcdTimeoutMs, tls: o.etcdTls });
  try {
    const r = await ds.rangePrefix('/calico/', false);
    return r.kvs.map((kv) => JSON.stringify(redactKv(kv.key.toString(), kv.value.toString()))).join('\n') + '\n';
  } catch (e) {
    // gRPC's name-resolution notes mean nothing to the reader.
    throw new Missing(`etcd at ${o.etcdEndpoints.join(', ')}: ${(e as Error).message.replace(/\.?\s*Resolution note:.*$/s, '')}`);
  } finally {
    ds.close();
  }
}

async function copyLogDir(dir: string, into: string): Promise<string[]> {
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new Missing(`no log directory at ${dir}`);
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const rel = path.join('logs', path.relative(dir, p));
        fs.mkdirSync(path.dirname(path.join(into, rel)), { recursive: true });
        fs.writeFileSync(path.join(into, rel), redactText(readFile(p, 'log')));
        out.push(rel);
      }
    }
  };
  walk(dir);
  return out;
}

/** Gathers every part, writes the archive into outDir, and says what was missing. */
export async function writeDiags(o: DiagsOptions): Promise<DiagsResult> {
  const now = o.now ?? new Date();
  let name = archiveName(now);
  for (let i = 1; fs.existsSync(path.join(o.outDir, name)); i++) name = archiveName(now).replace('.tar.gz', `-${i}.tar.gz`);
  const top = name.replace(/\.tar\.gz$/, '');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'calico-diags-'));
  try {
    const root = path.join(tmp, top);
    fs.mkdirSync(root);
    const files: string[] = [];
    const missing: MissingPart[] = [];
    for (const p of parts(o)) {
      o.onPart?.(p.what);
      try {
        const text = redactText(await p.gather());
        fs.mkdirSync(path.dirname(path.join(root, p.file)), { recursive: true });
        fs.writeFileSync(path.join(root, p.file), text);
        files.push(p.file);
      } catch (e) {
        missing.push({ file: p.file, what: p.what, reason: (e as Error).message });
      }
    }
    if (o.logDir) {
      o.onPart?.(`logs in ${o.logDir}`);
      try {
        files.push(...(await copyLogDir(o.logDir, root)));
      } catch (e) {
        missing.push({ file: 'logs/', what: `logs in ${o.logDir}`, reason: (e as Error).message });
      }
    }
    fs.writeFileSync(
      path.join(root, 'MISSING.txt'),
      missing.length ? missing.map((m) => `${m.file}: ${m.what}: ${m.reason}`).join('\n') + '\n' : 'Nothing missing.\n',
    );
    files.push('MISSING.txt');
    const archive = path.join(o.outDir, name);
    const r = await exec('tar', ['-czf', archive, '-C', tmp, top]);
    if (r.code !== 0) throw new Error(`writing ${archive} with tar failed (exit ${r.code}): ${r.stderr.trim()}`);
    // Host details: readable by whoever ran diags (root) only.
    fs.chmodSync(archive, 0o600);
    return { archive, files: files.map((f) => `${top}/${f}`), missing };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
