#!/usr/bin/env node
// Records which source the built code came from, for `calicoctl version`:
// dist/src/build-info.json with the git commit (and whether the tree had
// uncommitted changes), or "unknown" outside a git checkout.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
function git(args) {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}
const commit = git(['rev-parse', '--short=12', 'HEAD']);
const dirty = commit !== undefined && git(['status', '--porcelain', '--untracked-files=no']) !== '';
const info = { commit: commit ?? 'unknown', dirty, builtAt: new Date().toISOString() };
const out = path.join(root, 'dist', 'src', 'build-info.json');
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify(info) + '\n');
