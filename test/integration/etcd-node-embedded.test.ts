import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { teardownAll, onTeardown, makeRunDir, removeTree, run, waitFor, Netns, CALICOCTL_MAIN } from '../harness';

after(teardownAll);

// Every node here runs in a network namespace of its own: a node programs
// the host's NAT chains and sysctls, which must not touch the machine's.
// Inside it, loopback ports are ours alone, so fixed ones are safe.
const ETCD = 'http://127.0.0.1:23790';
const LISTEN = 'tcp://127.0.0.1:23770';

/** A harness directory, removed at teardown (after whatever was started in it). */
async function runDir(kind: string): Promise<string> {
  const dir = await makeRunDir(kind);
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  return dir;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.ETCD_ENDPOINTS;
  delete env.ETCD_AUTHORITY;
  return env;
}

function nsenter(ns: Netns, cmd: string, args: string[]): [string, string[]] {
  return ['nsenter', [`--net=${ns.path}`, cmd, ...args]];
}

let nodeSeq = 0;

interface RunningNode {
  pluginName: string;
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

/** `calicoctl node` in the foreground inside ns: no dockerd needed to start (it waits for Docker in the background). */
function startNode(ns: Netns, stateDir: string, extraArgs: string[], umask?: string): RunningNode {
  const pluginName = `h3t${process.pid}n${nodeSeq++}`;
  // A node killed outright leaves its plugin socket behind.
  onTeardown(`plugin socket ${pluginName}`, () => fs.rmSync(`/run/docker/plugins/${pluginName}.sock`, { force: true }));
  const node = [
    CALICOCTL_MAIN, 'node', '--state-dir', stateDir,
    '--docker', `unix://${path.join(stateDir, 'no-docker.sock')}`,
    // /run/docker/plugins is shared by every dockerd and node on the machine: a name of our own.
    '--plugin-name', pluginName,
    '--ip', '127.0.0.1', ...extraArgs,
  ];
  const [cmd, args] = umask
    ? nsenter(ns, 'sh', ['-c', `umask ${umask} && exec "$0" "$@"`, process.execPath, ...node])
    : nsenter(ns, process.execPath, node);
  const child = spawn(cmd, args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  onTeardown(`calicoctl node in ${stateDir}`, async () => {
    // Stopped the way an operator would, so it stops its member; killed only if that hangs.
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(timer);
    }
    // A member orphaned by a node killed mid-test.
    const pidFile = path.join(stateDir, 'etcd.pid');
    if (fs.existsSync(pidFile)) {
      try {
        process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
  return { pluginName, child, log: () => out, exited };
}

/** Gone, or a zombie nobody reaped yet (pid 1 on this machine is not always a real init). */
function gone(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z');
  } catch {
    return true;
  }
}

async function pools(ns: Netns, endpoint: string): Promise<string[] | undefined> {
  const [cmd, args] = nsenter(ns, process.execPath, [CALICOCTL_MAIN, 'pool', 'show', '-o', 'json', '--etcd-endpoints', endpoint]);
  const r = await run(cmd, args, { env: cleanEnv(), timeoutMs: 20000 });
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { cidr: string }[]).map((p) => p.cidr);
}

async function etcdAnswers(ns: Netns, endpoint: string): Promise<boolean> {
  const [cmd, args] = nsenter(ns, 'etcdctl', ['--endpoints', endpoint, '--dial-timeout', '1s', '--command-timeout', '2s', 'endpoint', 'health']);
  return (await run(cmd, args, { env: { ...cleanEnv(), ETCDCTL_API: '3' }, timeoutMs: 20000 })).code === 0;
}

async function waitStarted(n: RunningNode): Promise<void> {
  await waitFor('node started', async () => {
    if (n.child.exitCode !== null) throw new Error(`node exited: ${n.log()}`);
    return n.log().includes('registered host');
  }, 60000, 100);
}

async function stopNode(n: RunningNode): Promise<number | null> {
  n.child.kill('SIGTERM');
  return n.exited;
}

/** Every entry under dir (not following links) whose mode lets group or others in, or is not 0700/0600. */
function looseModes(dir: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) return;
    const mode = st.mode & 0o777;
    // BIRD sets its control socket to 0660 itself (group root, inside the 0700 dir): no bits for others, no group but root.
    const ok = st.isDirectory() ? mode === 0o700 : st.isFile() ? mode === 0o600 : (mode & 0o007) === 0 && ((mode & 0o070) === 0 || st.gid === 0);
    if (!ok) out.push(`${p} ${mode.toString(8)}`);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) walk(path.join(p, n));
  };
  walk(dir);
  return out;
}

const sockUrl = (stateDir: string) => `unix://${stateDir}/etcd.sock:2379`;

test('calicoctl node: starts an embedded etcd member on a socket in its state dir, creates the default pools, stops it on exit; state dir, files and plugin socket private under umask 000', async () => {
  const ns = await Netns.create('h3n');
  const stateDir = path.join(await runDir('h3-node'), 'state');
  const ETCD = sockUrl(stateDir);
  const node = startNode(ns, stateDir, ['--listen', LISTEN, '--embedded-etcd'], '000');
  await waitStarted(node);
  assert.deepEqual(await pools(ns, ETCD), ['192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  const log = node.log();
  assert.ok(log.includes(`started embedded etcd member on ${ETCD} (data in ${path.join(stateDir, 'etcd')})`), log);
  assert.match(log, /no IP pool existed: created the default pools 192\.168\.0\.0\/16 and fd80:24e2:f998:72d6::\/64/);
  // No silent split brain: the node says this datastore is its own, and how many hosts it holds.
  await waitFor('the datastore report', async () => /Datastore: this host's own single-member etcd \(unix:\/\/.*\): no other host shares it; .*--etcd-cluster/.test(node.log()) && /\n1 host registered there \(/.test(node.log()), 20000, 100);
  assert.ok(fs.existsSync(path.join(stateDir, 'etcd', 'member')));
  const etcdPid = Number(fs.readFileSync(path.join(stateDir, 'etcd.pid'), 'utf8'));

  // Started with umask 000: the state dir, everything in it and the plugin socket are root's alone.
  assert.equal(fs.statSync(stateDir).mode & 0o777, 0o700);
  assert.deepEqual(looseModes(stateDir), []);
  assert.equal(fs.statSync(`/run/docker/plugins/${node.pluginName}.sock`).mode & 0o777, 0o600);

  // Commands with --state-dir find the member there with nothing configured.
  const [sc, sa] = nsenter(ns, process.execPath, [CALICOCTL_MAIN, 'status', '--state-dir', stateDir, '--plugin-name', node.pluginName, '--output', 'json']);
  const status = await run(sc, sa, { env: cleanEnv() });
  const etcdStatus = (JSON.parse(status.stdout) as { etcd: { endpoints: string[]; reachable: boolean } }).etcd;
  assert.deepEqual(etcdStatus, { endpoints: [ETCD], reachable: true }, status.stdout + status.stderr);

  // Other commands reach the member the same way.
  const [cmd, args] = nsenter(ns, process.execPath, [CALICOCTL_MAIN, 'pool', 'add', '10.9.0.0/16', '--etcd-endpoints', ETCD]);
  const add = await run(cmd, args, { env: cleanEnv() });
  assert.equal(add.code, 0, add.stderr);

  assert.equal(await stopNode(node), 0, node.log());
  assert.ok(node.log().includes(`stopped embedded etcd member on ${ETCD}`), node.log());
  assert.equal(await etcdAnswers(ns, ETCD), false);
  assert.ok(gone(etcdPid), `etcd ${etcdPid} stopped`);
  assert.equal(fs.existsSync(path.join(stateDir, 'etcd.pid')), false);
  assert.equal(fs.existsSync(path.join(stateDir, 'etcd.sock:2379')), false);

  // A restart finds its data again (without --embedded-etcd: the data says this host runs the member); no defaults (re)created.
  fs.chmodSync(stateDir, 0o755);
  fs.chmodSync(path.join(stateDir, 'node-id'), 0o644);
  const again = startNode(ns, stateDir, ['--listen', LISTEN]);
  await waitStarted(again);
  assert.match(again.log(), /starting the embedded etcd member on .* \(its data is in this state directory\)/);
  assert.deepEqual(await pools(ns, ETCD), ['10.9.0.0/16', '192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  assert.doesNotMatch(again.log(), /created the default pools/);
  // A state dir loosened meanwhile is taken back.
  assert.deepEqual(looseModes(stateDir), []);

  // A node killed outright leaves its member running; the next node stops that orphan and starts its own.
  const orphan = Number(fs.readFileSync(path.join(stateDir, 'etcd.pid'), 'utf8'));
  again.child.kill('SIGKILL');
  await again.exited;
  assert.equal(await etcdAnswers(ns, ETCD), true, 'the orphan still answers');
  const third = startNode(ns, stateDir, ['--listen', LISTEN, '--embedded-etcd']);
  await waitStarted(third);
  assert.ok(third.log().includes(`stopping leftover embedded etcd (pid ${orphan})`), third.log());
  assert.ok(gone(orphan), `orphan ${orphan} stopped`);
  assert.deepEqual(await pools(ns, ETCD), ['10.9.0.0/16', '192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  assert.equal(await stopNode(third), 0, third.log());
  assert.equal(await etcdAnswers(ns, ETCD), false);
});

test('calicoctl node: with etcd configured and answering, uses it and starts no member of its own', async () => {
  const ns = await Netns.create('h3n');
  const etcdDir = await runDir('h3-etcd');
  // A plain etcd-server in the namespace, the way an operator would run one.
  const [cmd, args] = nsenter(ns, '/usr/bin/etcd', [
    '--name', 'ext', '--data-dir', path.join(etcdDir, 'data'),
    '--listen-client-urls', ETCD, '--advertise-client-urls', ETCD,
    '--listen-peer-urls', 'http://127.0.0.1:23791', '--initial-advertise-peer-urls', 'http://127.0.0.1:23791',
    '--initial-cluster', 'ext=http://127.0.0.1:23791',
  ]);
  const etcd = spawn(cmd, args, { stdio: ['ignore', fs.openSync(path.join(etcdDir, 'etcd.log'), 'a'), fs.openSync(path.join(etcdDir, 'etcd.log'), 'a')] });
  fs.writeFileSync(path.join(etcdDir, 'etcd.pid'), String(etcd.pid));
  const etcdExited = new Promise((r) => etcd.once('exit', r));
  onTeardown('external etcd', async () => {
    if (etcd.exitCode === null && etcd.signalCode === null) {
      etcd.kill('SIGKILL');
      await etcdExited;
    }
  });
  await waitFor('external etcd', () => etcdAnswers(ns, ETCD), 60000, 200);

  const stateDir = await runDir('h3-node');
  const node = startNode(ns, stateDir, ['--listen', LISTEN, '--etcd-endpoints', ETCD]);
  await waitStarted(node);
  assert.deepEqual(await pools(ns, ETCD), ['192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  assert.match(node.log(), new RegExp(`using etcd at ${ETCD} \\(from --etcd-endpoints\\)`));
  assert.doesNotMatch(node.log(), /embedded etcd member/);
  assert.equal(fs.existsSync(path.join(stateDir, 'etcd')), false);
  assert.equal(await stopNode(node), 0, node.log());
  assert.equal(await etcdAnswers(ns, ETCD), true, 'etcd outlives the node');
});

test('calicoctl node: a start that fails after the embedded member started stops the member again', async () => {
  const ns = await Netns.create('h3n');
  const stateDir = await runDir('h3-node');
  const [cmd, args] = nsenter(ns, process.execPath, [
    CALICOCTL_MAIN, 'node', '--state-dir', stateDir, '--listen', LISTEN,
    '--docker', `unix://${path.join(stateDir, 'no-docker.sock')}`, '--plugin-name', `h3t${process.pid}`,
    '--embedded-etcd', '--ip', '10.0.0.300',
  ]);
  const r = await run(cmd, args, { env: cleanEnv(), timeoutMs: 60000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /calicoctl node failed to start: --ip: "10\.0\.0\.300" is not a valid IP address/);
  assert.match(r.stderr, /started embedded etcd member/);
  assert.match(r.stderr, /stopped embedded etcd member/);
  assert.equal(await etcdAnswers(ns, sockUrl(stateDir)), false);
  assert.equal(fs.existsSync(path.join(stateDir, 'etcd.pid')), false);
});

test('quick start: with nothing configured, the node in /var/lib/calico runs the member on its socket and calicoctl (root) finds it; nobody is refused', async () => {
  // The default state dir, made private to this test: a tmpfs over
  // /var/lib/calico in a mount namespace of its own, and a network namespace
  // of its own (its 127.0.0.1:2379 and :2377 belong to no user's node).
  const ns = await Netns.create('h3n');
  const dir = await runDir('h3-quick');
  const pluginName = `h3q${process.pid}`;
  onTeardown(`plugin socket ${pluginName}`, () => fs.rmSync(`/run/docker/plugins/${pluginName}.sock`, { force: true }));
  const createdMountPoint = !fs.existsSync('/var/lib/calico');
  if (createdMountPoint) onTeardown('/var/lib/calico mount point', () => fs.rmSync('/var/lib/calico', { recursive: false, force: true }));
  const main = CALICOCTL_MAIN;
  const script = `
set -u
mkdir -p /var/lib/calico
mount -t tmpfs -o mode=0755 tmpfs /var/lib/calico
"$NODE" ${main} node --docker unix://${dir}/no-docker.sock --plugin-name ${pluginName} --ip 127.0.0.1 > ${dir}/node.log 2>&1 &
echo $! > ${dir}/node.pid
for i in $(seq 1 600); do grep -q 'registered host' ${dir}/node.log && break; sleep 0.1; done
"$NODE" ${main} pool show --output json > ${dir}/pools.json 2> ${dir}/pools.err; echo $? > ${dir}/pools.rc
ls -la /var/lib/calico > ${dir}/ls.txt
setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$NODE" ${main} pool show > ${dir}/nobody.out 2> ${dir}/nobody.err; echo $? > ${dir}/nobody.rc
kill -TERM $(cat ${dir}/node.pid); wait
`;
  onTeardown('quick-start node', () => {
    try {
      process.kill(Number(fs.readFileSync(path.join(dir, 'node.pid'), 'utf8')), 'SIGKILL');
    } catch {
      /* stopped by the script */
    }
  });
  const r = await run('nsenter', [`--net=${ns.path}`, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script], { env: { ...cleanEnv(), NODE: process.execPath }, timeoutMs: 120000 });
  const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
  const nodeLog = read('node.log');
  assert.equal(r.code, 0, r.stderr + nodeLog);
  assert.match(nodeLog, /no etcd answers at http:\/\/127\.0\.0\.1:2379: starting the embedded etcd member on unix:\/\/\/var\/lib\/calico\/etcd\.sock:2379/);
  assert.equal(read('pools.rc').trim(), '0', read('pools.err') + read('ls.txt') + nodeLog);
  assert.deepEqual((JSON.parse(read('pools.json')) as { cidr: string }[]).map((p) => p.cidr), ['192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  // A local user is turned away by the kernel (the state dir is 0700), and told why.
  assert.equal(read('nobody.rc').trim(), '1', read('nobody.out'));
  assert.match(read('nobody.err'), /Error accessing etcd at unix:\/\/\/var\/lib\/calico\/etcd\.sock:2379 .*(EACCES|permission denied)/i);
  assert.match(read('nobody.err'), /only root can reach it/);
});
