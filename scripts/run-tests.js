#!/usr/bin/env node
// Runs the compiled test files with node's own test runner.
// Usage: node scripts/run-tests.js [unit|integration|e2e ...] [--only <substring>]
// Unit tests need no root and no servers; integration and e2e tests start real
// dockerd / etcd / namespaces through test/harness and need root.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', 'dist', 'test');
const args = process.argv.slice(2);
const onlyIdx = args.indexOf('--only');
const only = onlyIdx >= 0 ? args.splice(onlyIdx, 2)[1] : undefined;
const suites = args.length ? args : ['unit', 'integration', 'e2e'];

function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : e.name.endsWith('.test.js') ? [p] : [];
  });
}

const files = suites
  .flatMap((suite) => walk(path.join(root, suite)).sort())
  .filter((f) => !only || f.includes(only));
if (files.length === 0) {
  console.error(`no test files found under ${root} for ${suites.join(', ')}`);
  process.exit(1);
}
// One runner invocation, so the closing summary counts every test. Files run
// one at a time: integration and e2e files start real daemons, and on a 2-core
// machine running them side by side only makes each slower and flakier.
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
});
process.exit(r.status === null ? 1 : r.status);
