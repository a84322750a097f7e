import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SerialPass } from '../../src/lifecycle/serial-pass';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('asks within the debounce share one pass; an ask during a pass makes exactly one more; errors go to onError and the next ask runs again', async () => {
  let runs = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let fail = false;
  const errors: string[] = [];
  let release: () => void = () => undefined;
  const p = new SerialPass({
    body: async () => {
      runs++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise<void>((r) => (release = r));
      inFlight--;
      if (fail) throw new Error('boom');
    },
    onError: (e) => errors.push(e.message),
    debounceMs: 10,
    stopped: () => false,
  });
  p.schedule();
  p.schedule();
  p.schedule();
  await tick(30);
  assert.equal(runs, 1, 'three asks in one debounce: one pass');
  const first = p.run();
  p.run();
  p.run();
  release();
  await tick(5);
  assert.equal(runs, 2, 'asks during a pass: exactly one more, right after');
  fail = true;
  release();
  await first;
  assert.equal(maxInFlight, 1, 'never two at once');
  assert.deepEqual(errors, ['boom']);
  const again = p.run();
  fail = false;
  release();
  await again;
  assert.equal(runs, 3, 'a failed pass does not stop the next ask');
});

test('once the owner is stopped no new pass starts: a pending debounce is cancelled, a rerun is dropped, settled() waits for the one under way', async () => {
  let stopped = false;
  let runs = 0;
  let release: () => void = () => undefined;
  const p = new SerialPass({
    body: async () => {
      runs++;
      await new Promise<void>((r) => (release = r));
    },
    onError: () => undefined,
    debounceMs: 10,
    stopped: () => stopped,
  });
  p.schedule();
  p.cancel();
  await tick(30);
  assert.equal(runs, 0, 'a cancelled debounce runs nothing');
  void p.run();
  void p.run();
  stopped = true;
  p.schedule();
  let done = false;
  const settled = p.settled().then(() => (done = true));
  await tick(5);
  assert.equal(done, false, 'settled waits for the pass under way');
  release();
  await settled;
  await tick(30);
  assert.equal(runs, 1, 'stopped: neither the rerun nor the new ask ran');
});
