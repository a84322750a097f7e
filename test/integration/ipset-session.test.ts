// The applier's long-lived `ipset -exist -` on a real kernel, in a namespace:
// batches of member changes land one after another, a batch with a bad line
// reports it (and the session goes on), sets are created and destroyed, a
// killed ipset is started again, and close() ends it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Netns, teardownAll, onTeardown, isRoot } from '../harness';
import { IpsetSession } from '../../src/dataplane/applier/ipset-session';

after(teardownAll);

const skip = !isRoot();

async function members(h: Netns, set: string): Promise<string[]> {
  const out = (await h.ok('ipset', ['save', set])).stdout;
  return out.split('\n').filter((l) => l.startsWith('add ')).map((l) => l.split(' ')[2]!).sort();
}

/** The pid of the session's ipset in the namespace, if one runs. */
function sessionPid(ns: string): string | undefined {
  try {
    return execFileSync('ip', ['netns', 'pids', ns]).toString().trim().split('\n').find((p) => {
      try {
        return execFileSync('cat', [`/proc/${p}/cmdline`]).toString().split('\0').join(' ').includes('ipset -exist -');
      } catch {
        return false;
      }
    });
  } catch {
    return undefined;
  }
}

test('ipset session: batches apply in order, errors are reported per batch, a killed ipset comes back, close ends it', { skip }, async () => {
  const h = await Netns.create('cdis');
  await h.ok('ipset', ['create', 'cali4-ep-A', 'hash:net,iface', 'counters']);
  await h.ok('ipset', ['create', 'cali4-tag-A', 'hash:net']);
  const s = new IpsetSession({ netns: h.name, timeoutMs: 5000 });
  onTeardown('ipset session', () => s.close());

  const ok = await s.apply('add cali4-ep-A 10.0.0.1,cali0000000001\nadd cali4-tag-A 10.0.0.1\n');
  assert.deepEqual(ok, { code: 0, stdout: '', stderr: '' });
  assert.deepEqual(await members(h, 'cali4-ep-A'), ['10.0.0.1,cali0000000001']);
  assert.deepEqual(await members(h, 'cali4-tag-A'), ['10.0.0.1']);

  // Side by side from the caller: run one after the other, each with its own result.
  const [a, b] = await Promise.all([s.apply('add cali4-tag-A 10.0.0.2\n'), s.apply('del cali4-tag-A 10.0.0.1\nadd cali4-tag-A 10.0.0.1\n')]);
  assert.equal(a.code, 0);
  assert.equal(b.code, 0, '-exist: a member already there is no error');
  assert.deepEqual(await members(h, 'cali4-tag-A'), ['10.0.0.1', '10.0.0.2']);

  // A set that does not exist: this batch fails with ipset's words; the next one is clean.
  const bad = await s.apply('add cali4-tag-GONE 10.0.0.3\nadd cali4-tag-A 10.0.0.3\n');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /does not exist/);
  assert.deepEqual(await members(h, 'cali4-tag-A'), ['10.0.0.1', '10.0.0.2', '10.0.0.3'], 'the line after the error still ran');
  assert.equal((await s.apply('del cali4-tag-A 10.0.0.3\n')).code, 0);

  // A refresh (swap) is not the session's: refused without running.
  assert.equal((await s.apply('swap cali4-tag-A cali4-ep-A\n')).code, 2);
  // Creating a set as the applier writes it, and destroying one.
  assert.equal((await s.apply('create cali4-tag-B hash:net family inet maxelem 1048576\nadd cali4-tag-B 10.0.9.1\n')).code, 0);
  assert.deepEqual(await members(h, 'cali4-tag-B'), ['10.0.9.1']);
  assert.equal((await s.apply('destroy cali4-tag-B\n')).code, 0);
  assert.equal((await s.apply('destroy cali4-tag-B\n')).code, 0, '-exist: a set already gone is no error either');
  assert.equal((await h.exec('ipset', ['list', '-n', 'cali4-tag-B'])).code === 0, false, 'it is gone');

  // ipset killed under it: the batch in flight (if any) fails, the next one starts a new process.
  const pid = sessionPid(h.name);
  assert.ok(pid, 'one ipset -exist - runs in the namespace');
  process.kill(Number(pid), 'SIGKILL');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await s.apply('add cali4-tag-A 10.0.0.4\n')).code, 0);
  assert.deepEqual(await members(h, 'cali4-tag-A'), ['10.0.0.1', '10.0.0.2', '10.0.0.4']);
  assert.notEqual(sessionPid(h.name), pid);

  s.close();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(sessionPid(h.name), undefined, 'close() ended it');
});
