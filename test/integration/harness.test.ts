import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { PrivateDockerd, ensureTestImage, teardownAll, TEST_IMAGE } from '../harness';

after(teardownAll);

test('harness: private dockerd runs the local busybox image and is removed at teardown', async () => {
  const d = await PrivateDockerd.start();
  await ensureTestImage(d);
  const r = await d.docker(['run', '--rm', TEST_IMAGE, 'sh', '-c', 'echo hello; exit 3']);
  assert.equal(r.stdout, 'hello\n');
  assert.equal(r.code, 3);
  assert.ok(fs.existsSync(d.socket));
});
