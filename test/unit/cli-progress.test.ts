import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { startProgress } from '../../src/cli/progress';

function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const s = { isTTY, text: '', write(c: string) { s.text += c; return true; } };
  return s as unknown as NodeJS.WriteStream & { text: string };
}

test('progress: a spinner on a terminal once the work outlasts a glance, cleared when done', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const s = fakeStream(true);
    const p = startProgress('Removing pool 10.0.0.0/8', s);
    mock.timers.tick(200);
    assert.equal(s.text, '', 'quick work prints nothing');
    mock.timers.tick(250);
    assert.match(s.text, /\r\x1b\[2K[|/\\-] Removing pool 10\.0\.0\.0\/8/);
    p.update('Releasing blocks');
    mock.timers.tick(100);
    assert.match(s.text, /Releasing blocks$/);
    p.stop();
    assert.ok(s.text.endsWith('\r\x1b[2K'), 'the line is cleared');
    const len = s.text.length;
    mock.timers.tick(1000);
    p.stop();
    assert.equal(s.text.length, len, 'nothing after stop');
  } finally {
    mock.timers.reset();
  }
});

test('progress: nothing at all when stderr is not a terminal (scripts, logs)', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const s = fakeStream(false);
    const p = startProgress('Working', s);
    mock.timers.tick(5000);
    p.stop();
    assert.equal(s.text, '');
  } finally {
    mock.timers.reset();
  }
});
