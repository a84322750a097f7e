// What `npm pack` puts in the package (the `files` field, without running the
// prepack build): bin/calicoctl, the built src as JavaScript, the build
// record, package.json and README; no tests, benches, TypeScript or maps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { run } from '../harness';

const ROOT = path.join(__dirname, '..', '..', '..');

test('npm pack: only what runs (bin, dist/src JavaScript, build record), no test/, bench/, .ts or source maps', async () => {
  const r = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, timeoutMs: 120000 });
  assert.equal(r.code, 0, r.stderr);
  const [pack] = JSON.parse(r.stdout) as { name: string; files: { path: string }[] }[];
  const files = pack!.files.map((f) => f.path);
  assert.equal(pack!.name, 'calico-docker');
  for (const f of ['bin/calicoctl', 'dist/src/cli/main.js', 'dist/src/build-info.json', 'package.json', 'README.md']) assert.ok(files.includes(f), `${f} in ${files.length} files`);
  const unwanted = files.filter((f) => /^(test|bench|src|dist\/test|dist\/bench)\/|\.ts$|\.map$|tsbuildinfo/.test(f));
  assert.deepEqual(unwanted, []);
  const outside = files.filter((f) => !/^(bin\/calicoctl|dist\/src\/.+\.js|dist\/src\/build-info\.json|package\.json|README\.md)$/.test(f));
  assert.deepEqual(outside, [], 'nothing else');
});
