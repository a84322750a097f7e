// The exit-code table of docs/calicoctl.md, run on every command's refusal
// path: 2 for usage (bad arguments, flags, unknown commands) or permission,
// 1 for a failure (here: etcd unreachable, a node that is not running).
// "0: already so" is held by the integration tests against a real etcd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ctl, commandPaths } from './cli-run';

const root = process.getuid?.() === 0;
const emptyStateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'calicoctl-exit-'));

/** One refusal per command: its arguments and the code it must exit with. */
const REFUSALS: Record<string, [string[], number][]> = {
  node: [[['node', '--listen', 'ftp://x'], 2], [['node', '--metrics', 'nonsense'], 2]],
  'node bgppeer': [[['node', 'bgppeer'], 2]],
  'node bgppeer add': [[['node', 'bgppeer', 'add', '10.0.0.1', 'as', 'x'], 2], [['node', 'bgppeer', 'add', '10.0.0.1', 'as', '64511', '--hostname', 'h'], 1]],
  'node bgppeer remove': [[['node', 'bgppeer', 'remove', 'nonsense'], 2]],
  'node bgppeer show': [[['node', 'bgppeer', 'show', '-o', 'yaml'], 2], [['node', 'bgppeer', 'show', '--hostname', 'h'], 1]],
  'node stop': [[['node', '--state-dir', emptyStateDir, 'stop', '--hostname', 'h'], 1]],
  'node remove': [[['node', 'remove'], 2], [['node', 'remove', '--hostname', 'bad name!'], 2], [['node', 'remove', '--hostname', 'gone'], 1]],
  pool: [[['pool'], 2]],
  'pool add': [[['pool', 'add'], 2], [['pool', 'add', 'nonsense'], 2], [['pool', 'add', '10.9.0.0/16'], 1]],
  'pool remove': [[['pool', 'remove', 'nonsense'], 2], [['pool', 'remove', '10.9.0.0/16'], 1]],
  'pool show': [[['pool', 'show', '--ipv4', '--ipv6'], 2], [['pool', 'show'], 1]],
  shownodes: [[['shownodes', '-o', 'yaml'], 2], [['shownodes'], 1]],
  status: [[['status', '-o', 'yaml'], 2], [['status', '--state-dir', emptyStateDir, '--plugin-name', 'calico-exit-test'], 1]],
  container: [[['container'], 2]],
  'container add': [[['container', 'add', 'c1', 'not-an-address'], 2], [['container', 'add', 'c1'], 2], [['container', 'add', 'c1', 'auto', '--docker', 'unix:///nonexistent.sock'], root ? 1 : 2]],
  'container remove': [[['container', 'remove'], 2], [['container', 'remove', 'c1', '--docker', 'unix:///nonexistent.sock'], root ? 1 : 2]],
  profile: [
    [['profile'], 2],
    [['profile', 'bad name!', 'tag', 'show'], 2],
    [['profile', 'WEB', 'frobnicate'], 2],
    [['profile', 'WEB', 'rule', 'add', 'inbound', 'permit'], 2],
    [['profile', 'WEB', 'rule', 'add', 'inbound', '--at=x', 'allow'], 2],
    [['profile', 'show', '-o', 'yaml'], 2],
    [['profile', 'show'], 1],
    [['profile', 'WEB', 'tag', 'add', 'T'], 1],
  ],
  bgppeer: [[['bgppeer'], 2]],
  'bgppeer rr': [[['bgppeer', 'rr'], 2]],
  'bgppeer rr add': [[['bgppeer', 'rr', 'add', 'nonsense'], 2], [['bgppeer', 'rr', 'add', '10.0.0.1'], 1]],
  'bgppeer rr remove': [[['bgppeer', 'rr', 'remove', 'nonsense'], 2]],
  'bgppeer rr show': [[['bgppeer', 'rr', 'show', '-o', 'yaml'], 2], [['bgppeer', 'rr', 'show'], 1]],
  'bgppeer add': [[['bgppeer', 'add', '10.0.0.1', 'as', '0'], 2], [['bgppeer', 'add', '10.0.0.1', 'is', '64511'], 2]],
  'bgppeer remove': [[['bgppeer', 'remove', '10.0.0.300'], 2]],
  'bgppeer show': [[['bgppeer', 'show', '-o', 'yaml'], 2], [['bgppeer', 'show'], 1]],
  bgp: [[['bgp'], 2]],
  'bgp default-node-as': [[['bgp', 'default-node-as', 'x'], 2], [['bgp', 'default-node-as'], 1]],
  'bgp node-mesh': [[['bgp', 'node-mesh', 'maybe'], 2], [['bgp', 'node-mesh', '-o', 'json'], 1]],
  'bgp node-mesh-password': [[['bgp', 'node-mesh-password', 'frob'], 2], [['bgp', 'node-mesh-password', 'set'], 2]],
  'default-node-as': [[['default-node-as', 'x'], 2]],
  'bgp-node-mesh': [[['bgp-node-mesh', 'maybe'], 2]],
  endpoint: [[['endpoint'], 2]],
  'endpoint show': [[['endpoint', 'show', '-o', 'yaml'], 2]],
  policy: [[['policy'], 2]],
  'policy trace': [[['policy', 'trace', 'a'], 2]],
  diags: [[['diags', '--log-dir'], 2]],
  version: [[['version', 'extra'], 2]],
  completion: [[['completion', 'fish'], 2], [['completion'], 2]],
};

test('exit codes: every command has a refusal case, and each exits with its code', async () => {
  const paths = commandPaths().map((c) => c.path);
  assert.deepEqual(paths.filter((p) => !REFUSALS[p]), [], 'commands without a refusal case in REFUSALS');
  for (const p of paths) {
    for (const [args, code] of REFUSALS[p]!) {
      const r = await ctl(...args);
      assert.equal(r.code, code, `calicoctl ${args.join(' ')}: exit ${code} expected, got ${r.code}; stderr=${r.stderr}`);
      assert.doesNotMatch(r.stderr, /\n\s+at /, `calicoctl ${args.join(' ')}: no stack trace`);
      // status reports what is down on stdout (its answer); everything else says why on stderr.
      assert.ok((r.stderr || (p === 'status' ? r.stdout : '')).length > 0, `calicoctl ${args.join(' ')}: says why`);
    }
  }
});

test('exit codes: an unknown flag on any command, or an unknown command (with or without --help), is a usage error: 2', async () => {
  for (const { path: p } of commandPaths()) {
    const r = await ctl(...p.split(' '), '--no-such-flag');
    assert.equal(r.code, 2, `calicoctl ${p} --no-such-flag: ${r.stderr}`);
    assert.match(r.stderr, /unknown option '--no-such-flag'/);
  }
  for (const args of [['frobnicate'], ['frobnicate', '--help'], ['pool', 'frobnicate', '--help'], ['node', 'bgppeer', 'frob', '--help']]) {
    const r = await ctl(...args);
    assert.equal(r.code, 2, `calicoctl ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /unknown command 'frob(nicate)?'/);
    assert.equal(r.stdout, '', 'no help printed as if it were an answer');
  }
});

test('exit codes: old spellings still work, warn once, and a disagreement with the new one is a usage error', async () => {
  const both = await ctl('node', '--hostname', 'a', '--name', 'b', '--init-system');
  assert.equal(both.code, 2, both.stderr);
  assert.match(both.stderr, /warning: --name is an old spelling of --hostname; use --hostname\n/);
  assert.match(both.stderr, /--hostname a and --name b disagree/);
  const docker = await ctl('node', '--docker', 'unix:///a.sock', '--docker-upstream', 'unix:///b.sock', '--init-system');
  assert.equal(docker.code, 2, docker.stderr);
  assert.match(docker.stderr, /--docker unix:\/\/\/a\.sock and --docker-upstream unix:\/\/\/b\.sock disagree/);
});
