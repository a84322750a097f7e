import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { teardownAll } from '../harness';
import { startProxyFixture, compare, ProxyFixture, maskIds } from './proxy-fixture';

after(teardownAll);
let f: ProxyFixture;
before(async () => {
  f = await startProxyFixture();
});

test('16: docker run img echo hi (no -i: the CLI half-closes at once)', async () => {
  const { proxied } = await compare(f, 'run echo', ['run', '--rm', f.image, 'echo', 'hi']);
  assert.equal(proxied.stdout, 'hi\n');
});

test('17: stdin piped to docker run -i, and output after stdin EOF', async () => {
  const a = await compare(f, 'run -i cat', ['run', '--rm', '-i', f.image, 'cat'], { input: 'hello\n' });
  assert.equal(a.proxied.stdout, 'hello\n');
  const b = await compare(f, 'output after EOF', ['run', '--rm', '-i', f.image, 'sh', '-c', 'cat >/dev/null; sleep 1; echo done'], { input: '' });
  assert.equal(b.proxied.stdout, 'done\n');
  void maskIds;
});
