// Every config the renderer's unit tests check is also a config BIRD itself
// accepts: `bird -p -c <file>` parses it (no root, no running daemon).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { teardownAll, makeRunDir, onTeardown, removeTree, run } from '../harness';
import { BIRD_BIN } from '../../src/bgp/bird';
import { renderBirdConfig } from '../../src/bgp/render';
import { CASES } from '../unit/bgp-render-cases';

after(teardownAll);

test('bird -p accepts every rendered config, and refuses a broken one (the check can fail)', async () => {
  const dir = await makeRunDir('bird-parse');
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  for (const [name, input] of Object.entries(CASES)) {
    const file = path.join(dir, `${name}.conf`);
    fs.writeFileSync(file, renderBirdConfig(input));
    const r = await run(BIRD_BIN, ['-p', '-c', file]);
    assert.equal(r.code, 0, `${name}: ${r.stderr}${r.stdout}`);
  }
  const broken = path.join(dir, 'broken.conf');
  fs.writeFileSync(broken, renderBirdConfig(CASES.mesh3!).replace('neighbor 172.16.0.30 as 64511;', 'neighbor 172.16.0.30 as 4294967296;'));
  const r = await run(BIRD_BIN, ['-p', '-c', broken]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr + r.stdout, /broken\.conf:\d+/);
});
