import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { allLoopback, programFor, quoteExecArg, renderSystemdUnit, unitArgs } from '../../src/cli/init-system';
import { splitExecStart } from '../systemd-exec';

const base = { program: ['/usr/local/bin/calicoctl'], nodeBinDir: '/usr/local/bin', localExternalEtcd: false };

test('init-system: the unit runs the node in the foreground with exactly the flags given', () => {
  const args = ['--etcd-endpoints', 'http://10.0.0.1:2379', 'node', '--ip=10.0.0.10', '--detach', '--init-system', '--hostname', 'trinity10'];
  const unit = renderSystemdUnit({ ...base, args });
  const exec = /^ExecStart=(.*)$/m.exec(unit)![1]!;
  assert.equal(exec, '/usr/local/bin/calicoctl --etcd-endpoints http://10.0.0.1:2379 node --ip=10.0.0.10 --hostname trinity10');
  assert.deepEqual(splitExecStart(exec), ['/usr/local/bin/calicoctl', '--etcd-endpoints', 'http://10.0.0.1:2379', 'node', '--ip=10.0.0.10', '--hostname', 'trinity10']);
  for (const line of ['Type=simple', 'Restart=on-failure', 'KillMode=mixed', 'TimeoutStopSec=15', 'After=network-online.target docker.service', 'Wants=network-online.target docker.service', 'EnvironmentFile=-/etc/default/calico-node', 'WantedBy=multi-user.target']) {
    assert.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  }
  assert.doesNotMatch(exec, /--detach|--init-system/);
  assert.ok(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)![1]) > 5, 'above the node\'s own 5 s stop bound');
});

test('init-system: words with spaces, quotes, backslashes, % and $ reach the node unchanged', () => {
  const tricky = ['node', '--listen', 'unix:///run/my calico.sock', '--hostname', 'a"b\\c', '--log-level', '100%', '--state-dir', '/var/lib/$HOME', '--plugin-name', "it's", ''];
  const exec = /^ExecStart=(.*)$/m.exec(renderSystemdUnit({ ...base, args: tricky }))![1]!;
  assert.deepEqual(splitExecStart(exec), ['/usr/local/bin/calicoctl', ...tricky]);
  assert.equal(quoteExecArg('100%'), '100%%');
  assert.equal(quoteExecArg('$HOME'), '$$HOME');
  assert.equal(quoteExecArg('a b'), '"a b"');
  assert.equal(quoteExecArg(''), '""');
});

test('init-system: ordered after etcd.service only for an etcd on this host that the node does not start', () => {
  assert.match(renderSystemdUnit({ ...base, args: ['node'], localExternalEtcd: true }), /^After=network-online.target docker.service etcd.service$/m);
  assert.ok(allLoopback(['http://127.0.0.1:2379', 'https://localhost:2379', 'http://[::1]:2379']));
  assert.ok(!allLoopback(['http://127.0.0.1:2379', 'http://10.0.0.1:2379']));
  assert.ok(!allLoopback([]));
});

test('init-system: the PATH starts with the directory of the node that printed the unit; a main.js is run by node', () => {
  assert.match(renderSystemdUnit({ ...base, nodeBinDir: '/opt/node20/bin', args: ['node'] }), /^Environment=PATH=\/opt\/node20\/bin:\/usr\/local\/sbin:/m);
  assert.deepEqual(programFor('/usr/bin/node', '/usr/local/bin/calicoctl'), ['/usr/local/bin/calicoctl']);
  assert.deepEqual(programFor('/usr/bin/node', '/src/dist/src/cli/main.js'), ['/usr/bin/node', '/src/dist/src/cli/main.js']);
  assert.deepEqual(unitArgs(['node', '--detach', '--', '--detach']), ['node', '--', '--detach']);
});

test('examples/systemd/calico-node.service is what the renderer prints for the flags it names', () => {
  const file = path.join(__dirname, '..', '..', '..', 'examples', 'systemd', 'calico-node.service');
  const expected = renderSystemdUnit({ program: ['/usr/local/bin/calicoctl'], nodeBinDir: '/usr/local/bin', args: ['node', '--ip=10.0.0.10', '--metrics', 'tcp://127.0.0.1:9099'], localExternalEtcd: false });
  assert.equal(fs.readFileSync(file, 'utf8'), expected, 'regenerate the example (see examples/systemd/README.md)');
});
