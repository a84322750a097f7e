// The CLI knows which host it is on: without --hostname, commands take the
// name of the node running on this machine from its status file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StatusFile, readStatusFile } from '../../src/node/status-file';
import { silentLogger } from '../../src/log/logger';
import { chooseHostName, hostNameNote } from '../../src/cli/host';
import { ctl } from './cli-run';

test('host name: the flag, else the node name from its state directory, else the machine hostname; said when it differs', () => {
  assert.deepEqual(chooseHostName('a', { host: 'b', machine: 'm' }, 'm', '/s'), { name: 'a', source: 'flag', stateDir: '/s' });
  assert.deepEqual(chooseHostName(undefined, { host: 'b', machine: 'm' }, 'm', '/s'), { name: 'b', source: 'node', stateDir: '/s' });
  assert.deepEqual(chooseHostName(undefined, { host: 'b', machine: 'other' }, 'm', '/s'), { name: 'm', source: 'machine', stateDir: '/s' }, 'a status file written under another hostname (a lab host in its own UTS namespace) lends no name');
  assert.deepEqual(chooseHostName(undefined, { host: 'b' }, 'm', '/s'), { name: 'm', source: 'machine', stateDir: '/s' }, 'nor does one that does not say where it was written');
  assert.deepEqual(chooseHostName(undefined, undefined, 'm', '/s'), { name: 'm', source: 'machine', stateDir: '/s' });
  assert.equal(hostNameNote({ name: 'b', source: 'node', stateDir: '/s' }, 'm'), "Using host name b: the name of the node on this machine (/s); this machine's hostname is m. Pass --hostname to choose another.");
  assert.equal(hostNameNote({ name: 'm', source: 'node', stateDir: '/s' }, 'm'), undefined, 'nothing to say when it is the machine\'s hostname');
  assert.equal(hostNameNote({ name: 'a', source: 'flag', stateDir: '/s' }, 'm'), undefined, 'nothing to say when the operator chose it');
});

test('host name: the node writes its name into its status file, and the CLI reads it from there', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calicoctl-host-'));
  try {
    const sf = new StatusFile({ stateDir: dir, host: 'trinity10-lab', components: () => [], log: silentLogger() });
    await sf.start();
    await sf.stop();
    assert.equal(readStatusFile(dir)?.host, 'trinity10-lab');
    assert.equal(readStatusFile(dir)?.machine, os.hostname(), 'the file says on which machine it was written');
    // etcd is down here (exit 1), but the name used is said first.
    const r = await ctl('node', '--state-dir', dir, 'bgppeer', 'show');
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^Using host name trinity10-lab: the name of the node on this machine \\(${dir}\\); this machine's hostname is ${os.hostname()}\\.`));
    const given = await ctl('node', '--state-dir', dir, 'bgppeer', 'show', '--hostname', 'other');
    assert.doesNotMatch(given.stderr, /Using host name/);
    // The same file read under another hostname (a lab host in its own UTS
    // namespace shares the default state directory): the machine's own name.
    const file = path.join(dir, 'node-status.json');
    fs.writeFileSync(file, JSON.stringify({ ...readStatusFile(dir), machine: 'some-other-machine' }));
    const elsewhere = await ctl('node', '--state-dir', dir, 'bgppeer', 'show');
    assert.doesNotMatch(elsewhere.stderr, /Using host name/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
