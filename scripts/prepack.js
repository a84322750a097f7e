#!/usr/bin/env node
// `npm pack` / `npm publish`: a fresh build of src/ alone (tsconfig.build.json:
// no tests, no benches, no source maps) into dist/src, then the build record.
// dist/src is emptied first so no file of a deleted source ends in the package.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
fs.rmSync(path.join(root, 'dist', 'src'), { recursive: true, force: true });
// The dev build's incremental record would otherwise believe dist/src is current.
fs.rmSync(path.join(root, 'dist', '.tsbuildinfo'), { force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
require('./build-info.js');
