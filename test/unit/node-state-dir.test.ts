import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { prepareStateDir } from '../../src/node/state-dir';

const mode = (p: string) => (fs.statSync(p).mode & 0o777).toString(8);

test('state dir: made 0700 under umask 000; a loose one from an earlier run is tightened (its files 0600, BIRD\'s too), nothing deeper is rewritten', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'state-dir-'));
  const old = process.umask(0);
  try {
    const fresh = path.join(root, 'fresh', 'state');
    prepareStateDir(fresh);
    assert.equal(mode(fresh), '700');

    const d = path.join(root, 'loose');
    fs.mkdirSync(path.join(d, 'bird'), { recursive: true });
    fs.mkdirSync(path.join(d, 'other', 'deep'), { recursive: true });
    fs.writeFileSync(path.join(d, 'node-id'), 'x');
    fs.writeFileSync(path.join(d, 'bird', 'bird.conf'), 'x');
    fs.writeFileSync(path.join(d, 'other', 'deep', 'f'), 'x');
    fs.symlinkSync('/etc/hostname', path.join(d, 'link'));
    prepareStateDir(d);
    assert.deepEqual(
      ['.', 'node-id', 'bird', 'bird/bird.conf', 'other', 'other/deep', 'other/deep/f'].map((p) => `${p} ${mode(path.join(d, p))}`),
      ['. 700', 'node-id 600', 'bird 700', 'bird/bird.conf 600', 'other 700', 'other/deep 777', 'other/deep/f 666'],
    );
    assert.notEqual(mode('/etc/hostname'), '600', 'a link is never followed');
  } finally {
    process.umask(old);
    fs.rmSync(root, { recursive: true, force: true });
  }
});
