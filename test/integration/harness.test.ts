import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { PrivateDockerd, ensureTestImage, teardownAll, TEST_IMAGE, HARNESS_ROOT, sweepDeadRuns } from '../harness';

after(teardownAll);

test('harness: private dockerd runs the local busybox image and is removed at teardown', async () => {
  const d = await PrivateDockerd.start();
  await ensureTestImage(d);
  const r = await d.docker(['run', '--rm', TEST_IMAGE, 'sh', '-c', 'echo hello; exit 3']);
  assert.equal(r.stdout, 'hello\n');
  assert.equal(r.code, 3);
  assert.ok(fs.existsSync(d.socket));
});

test('harness: a dead run\'s processes are swept by their pid files, nested ones too (a lab router\'s BIRD)', async () => {
  // A dead owner: a child that already exited.
  const gone = spawn('true');
  await new Promise((r) => gone.once('exit', r));
  fs.mkdirSync(HARNESS_ROOT, { recursive: true });
  const dir = fs.mkdtempSync(path.join(HARNESS_ROOT, 'sweep-test-'));
  fs.writeFileSync(path.join(dir, 'owner.pid'), String(gone.pid));
  const left = spawn('sleep', ['600'], { stdio: 'ignore' });
  const exited = new Promise((r) => left.once('exit', r));
  fs.mkdirSync(path.join(dir, 'router'));
  fs.writeFileSync(path.join(dir, 'router', 'bird.pid'), String(left.pid));
  try {
    await sweepDeadRuns();
    await exited;
    assert.equal(left.signalCode, 'SIGKILL');
    assert.ok(!fs.existsSync(dir), 'the dead run\'s directory is removed');
  } finally {
    left.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
