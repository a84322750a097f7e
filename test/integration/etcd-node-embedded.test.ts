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
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
}

/** `calicoctl node` in the foreground inside ns: no dockerd needed to start (it waits for Docker in the background). */
function startNode(ns: Netns, stateDir: string, extraArgs: string[]): RunningNode {
  const pluginName = `h3t${process.pid}n${nodeSeq++}`;
  // A node killed outright leaves its plugin socket behind.
  onTeardown(`plugin socket ${pluginName}`, () => fs.rmSync(`/run/docker/plugins/${pluginName}.sock`, { force: true }));
  const [cmd, args] = nsenter(ns, process.execPath, [
    CALICOCTL_MAIN, 'node', '--state-dir', stateDir,
    '--docker-upstream', `unix://${path.join(stateDir, 'no-docker.sock')}`,
    // /run/docker/plugins is shared by every dockerd and node on the machine: a name of our own.
    '--plugin-name', pluginName,
    '--ip', '127.0.0.1', ...extraArgs,
  ]);
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
  return { child, log: () => out, exited };
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

test('calicoctl node: starts an embedded etcd member under its state dir, creates the default pools, stops it on exit', async () => {
  const ns = await Netns.create('h3n');
  const stateDir = await runDir('h3-node');
  const node = startNode(ns, stateDir, ['--listen', LISTEN, '--etcd-endpoints', ETCD, '--embedded-etcd']);
  await waitStarted(node);
  assert.deepEqual(await pools(ns, ETCD), ['192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  const log = node.log();
  assert.match(log, new RegExp(`no etcd answers at ${ETCD}: starting an embedded etcd member`));
  assert.ok(log.includes(`started embedded etcd member on ${ETCD} (data in ${path.join(stateDir, 'etcd')})`), log);
  assert.match(log, /no IP pool existed: created the default pools 192\.168\.0\.0\/16 and fd80:24e2:f998:72d6::\/64/);
  assert.ok(fs.existsSync(path.join(stateDir, 'etcd', 'member')));
  const etcdPid = Number(fs.readFileSync(path.join(stateDir, 'etcd.pid'), 'utf8'));

  // Other commands reach the member the same way.
  const [cmd, args] = nsenter(ns, process.execPath, [CALICOCTL_MAIN, 'pool', 'add', '10.9.0.0/16', '--etcd-endpoints', ETCD]);
  const add = await run(cmd, args, { env: cleanEnv() });
  assert.equal(add.code, 0, add.stderr);

  assert.equal(await stopNode(node), 0, node.log());
  assert.ok(node.log().includes(`stopped embedded etcd member on ${ETCD}`), node.log());
  assert.equal(await etcdAnswers(ns, ETCD), false);
  assert.ok(gone(etcdPid), `etcd ${etcdPid} stopped`);
  assert.equal(fs.existsSync(path.join(stateDir, 'etcd.pid')), false);

  // A restart finds its data again; pools exist, so no defaults are (re)created.
  const again = startNode(ns, stateDir, ['--listen', LISTEN, '--etcd-endpoints', ETCD, '--embedded-etcd']);
  await waitStarted(again);
  assert.deepEqual(await pools(ns, ETCD), ['10.9.0.0/16', '192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  assert.doesNotMatch(again.log(), /created the default pools/);

  // A node killed outright leaves its member running; the next node stops that orphan and starts its own.
  const orphan = Number(fs.readFileSync(path.join(stateDir, 'etcd.pid'), 'utf8'));
  again.child.kill('SIGKILL');
  await again.exited;
  assert.equal(await etcdAnswers(ns, ETCD), true, 'the orphan still answers');
  const third = startNode(ns, stateDir, ['--listen', LISTEN, '--etcd-endpoints', ETCD, '--embedded-etcd']);
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
    '--docker-upstream', `unix://${path.join(stateDir, 'no-docker.sock')}`, '--plugin-name', `h3t${process.pid}`,
    '--etcd-endpoints', ETCD, '--embedded-etcd', '--ip', '10.0.0.300',
  ]);
  const r = await run(cmd, args, { env: cleanEnv(), timeoutMs: 60000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /calicoctl node failed to start: --ip: "10\.0\.0\.300" is not a valid IP address/);
  assert.match(r.stderr, /started embedded etcd member/);
  assert.match(r.stderr, /stopped embedded etcd member/);
  assert.equal(await etcdAnswers(ns, ETCD), false);
  assert.equal(fs.existsSync(path.join(stateDir, 'etcd.pid')), false);
});

test('calicoctl node with nothing configured: embedded member on 127.0.0.1:2379, found by other commands with no configuration', async () => {
  // 127.0.0.1:2379 and :2377 inside a namespace of our own belong to no user's node.
  const ns = await Netns.create('h3n');
  const stateDir = await runDir('h3-node');
  // Defaults throughout: no --etcd-endpoints, no --listen.
  const node = startNode(ns, stateDir, []);
  await waitStarted(node);
  assert.match(node.log(), /no etcd answers at http:\/\/127\.0\.0\.1:2379: starting an embedded etcd member/);
  const [c2, a2] = nsenter(ns, process.execPath, [CALICOCTL_MAIN, 'pool', 'show', '--output', 'json']);
  const r = await run(c2, a2, { env: cleanEnv(), timeoutMs: 20000 });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((JSON.parse(r.stdout) as { cidr: string }[]).map((p) => p.cidr), ['192.168.0.0/16', 'fd80:24e2:f998:72d6::/64']);
  assert.equal(await stopNode(node), 0, node.log());
  assert.equal(await etcdAnswers(ns, 'http://127.0.0.1:2379'), false);
});
