import { test } from 'node:test';
import assert from 'node:assert/strict';
import { birdVersionFrom, etcdVersionFrom, formatVersion, versionRequest } from '../../src/cli/commands/version';
import { layoutVerdict, LAYOUT_VERSION } from '../../src/datastore/layout-store';
import { keys } from '../../src/datastore/keys';

test('version: BIRD and etcd versions from their --version output', () => {
  assert.equal(birdVersionFrom('BIRD version 2.0.12\n'), '2.0.12');
  assert.equal(etcdVersionFrom('etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8\n'), '3.4.23');
  assert.equal(birdVersionFrom('bash: bird: command not found'), undefined);
});

test('version: --version or -V anywhere before `--` asks for it, with the global --etcd-endpoints', () => {
  assert.deepEqual(versionRequest(['--version']), { etcdEndpoints: undefined });
  assert.deepEqual(versionRequest(['node', '--ip', '10.0.0.1', '-V']), { etcdEndpoints: undefined });
  assert.deepEqual(versionRequest(['--etcd-endpoints', 'http://e:2379', 'pool', 'show', '--version']), { etcdEndpoints: 'http://e:2379' });
  assert.deepEqual(versionRequest(['--etcd-endpoints=http://e:2379', 'version', '--version']), { etcdEndpoints: 'http://e:2379' });
  assert.equal(versionRequest(['node', '--ip', '10.0.0.1']), undefined);
  assert.equal(versionRequest(['container', 'x', 'exec', '--', '--version']), undefined);
});

test('version: the report names the package, build, BIRD, etcd and the layout', () => {
  const text = formatVersion({ package: '0.1.0', build: { commit: 'abc123', dirty: true }, bird: '2.0.12', etcd: 'not installed (/usr/bin/etcd)', layout: '1', etcdEndpoints: ['http://127.0.0.1:2379'] });
  assert.equal(
    text,
    [
      'calicoctl version 0.1.0',
      'build:            abc123 (with uncommitted changes)',
      'BIRD:             2.0.12',
      'etcd:             not installed (/usr/bin/etcd)',
      `datastore layout: 1 (this calicoctl knows up to ${LAYOUT_VERSION}; etcd at http://127.0.0.1:2379)`,
      '',
    ].join('\n'),
  );
  assert.match(formatVersion({ package: '0.1.0', build: { commit: 'unknown', dirty: false }, bird: '', etcd: '', layout: '', etcdEndpoints: [] }), /^build: +unknown$/m);
});

test('layout version: written when absent, accepted up to the known one, refused when newer or garbled', () => {
  assert.equal(keys.layoutVersion(), '/calico/v1/config/LayoutVersion');
  assert.deepEqual(layoutVerdict(undefined, 1), { action: 'write', version: 1 });
  assert.deepEqual(layoutVerdict('1', 1), { action: 'ok', version: 1 });
  assert.deepEqual(layoutVerdict('1', 2), { action: 'ok', version: 1 });
  const newer = layoutVerdict('2', 1);
  assert.equal(newer.action, 'refuse');
  assert.match((newer as { message: string }).message, /the datastore has layout version 2, newer than this calicoctl knows \(1\).*Upgrade calicoctl on this host/);
  assert.match((layoutVerdict('two', 1) as { message: string }).message, /LayoutVersion holds "two", not a layout version/);
});
