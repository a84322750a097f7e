// The kernel tools' runner: several tools from one process start (`many`),
// each with its own input, output, errors and exit status, as if each had
// been started alone. Real processes (sh, cat, tr), no kernel needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { manyScript, MANY_AT_ONCE, shellWord, toolRunner } from '../../src/dataplane/applier/exec';

test('many: each tool gets its own input and reports its own output, errors and exit status, in order', async () => {
  const run = toolRunner({});
  const big = 'x'.repeat(300_000) + '\n';
  const r = await run.many([
    { cmd: 'cat', args: [], input: 'one\n' },
    { cmd: 'sh', args: ['-c', 'cat >/dev/null; echo "line: it\'s bad" >&2; exit 3'], input: 'ignored\n' },
    { cmd: 'tr', args: ['x', 'y'], input: big },
    { cmd: 'sh', args: ['-c', 'exit 0'] },
  ]);
  assert.deepEqual(r[0], { code: 0, stdout: 'one\n', stderr: '' });
  assert.deepEqual(r[1], { code: 3, stdout: '', stderr: "line: it's bad\n" });
  assert.equal(r[2]!.code, 0);
  assert.equal(r[2]!.stdout, 'y'.repeat(300_000) + '\n', 'a large input and output pass whole');
  assert.deepEqual(r[3], { code: 0, stdout: '', stderr: '' });
});

test('many: a tool that cannot be found says so; more tools than one shell takes run in several', async () => {
  const run = toolRunner({});
  const [missing, ok] = await run.many([{ cmd: 'no-such-tool-here', args: [] }, { cmd: 'cat', args: [], input: 'a' }]);
  assert.equal(missing!.code, 127);
  assert.match(missing!.stderr, /no-such-tool-here/);
  assert.deepEqual(ok, { code: 0, stdout: 'a', stderr: '' });
  const calls = Array.from({ length: MANY_AT_ONCE * 2 + 3 }, (_, i) => ({ cmd: 'cat', args: [], input: `${i}` }));
  const all = await run.many(calls);
  assert.deepEqual(all.map((x) => x.stdout), calls.map((c) => c.input));
});

test('many: a tool that outlives the timeout is killed with its shell, and says so', async () => {
  const run = toolRunner({ timeoutMs: 300 });
  const started = Date.now();
  const [slow, quick] = await run.many([{ cmd: 'sleep', args: ['30'] }, { cmd: 'cat', args: [], input: 'q' }]);
  assert.ok(Date.now() - started < 10_000, 'not the 30 s of the tool');
  assert.equal(slow!.code, null);
  assert.match(slow!.stderr, /killed by SIGKILL after 300 ms/);
  assert.deepEqual(quick, { code: 0, stdout: 'q', stderr: '' });
});

test('manyScript and shellWord: every word quoted, each tool on its own descriptors', () => {
  assert.equal(shellWord("a'b c"), `'a'\\''b c'`);
  assert.equal(
    manyScript([{ cmd: 'ipset', args: ['restore'] }, { cmd: 'iptables-restore', args: ['--noflush', '-w'] }], 'ns1'),
    "( 'ip' 'netns' 'exec' 'ns1' 'ipset' 'restore' <&3 >&5 2>&7; echo \"0 $?\" ) &\n" +
      "( 'ip' 'netns' 'exec' 'ns1' 'iptables-restore' '--noflush' '-w' <&4 >&6 2>&8; echo \"1 $?\" ) &\nwait\n",
  );
});
