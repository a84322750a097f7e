// Facts about the tree a reviewer checks first: no import cycle, between
// files or between the folders of src/ (a folder is a concept; two concepts
// that need each other are one, or are cut wrong); the node's wiring lives
// in src/node alone; one endpoint type. Type-only imports count too: they
// vanish at run time, but two modules that need each other's types are one
// concept cut in two all the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import madge from 'madge';

const ROOT = path.join(__dirname, '..', '..', '..');
const SRC = path.join(ROOT, 'src');

async function graph(): Promise<Record<string, string[]>> {
  const res = await madge(SRC, {
    fileExtensions: ['ts'],
    tsConfig: path.join(ROOT, 'tsconfig.json'),
    detectiveOptions: { ts: { skipTypeImports: false }, tsx: { skipTypeImports: false } },
  });
  return res.obj();
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every cycle of a directed graph, each as the list of its nodes (Tarjan's strongly connected components > 1). */
function cycles(edges: Map<string, Set<string>>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of edges.keys()) if (!idx.has(v)) visit(v);
  return out;
}

test('no import cycle between files of src/', async () => {
  const g = await graph();
  const edges = new Map(Object.entries(g).map(([f, ds]) => [f, new Set(ds)]));
  assert.deepEqual(cycles(edges), []);
});

test('no import cycle between the folders of src/ (each folder one concept)', async () => {
  const g = await graph();
  const folder = (f: string) => (f.includes('/') ? f.split('/')[0] : '.');
  const edges = new Map<string, Set<string>>();
  const why: string[] = [];
  for (const [f, deps] of Object.entries(g)) {
    for (const d of deps) {
      const a = folder(f);
      const b = folder(d);
      if (a === b) continue;
      if (!edges.has(a)) edges.set(a, new Set());
      edges.get(a)!.add(b);
      why.push(`${f} -> ${d}`);
    }
  }
  const found = cycles(edges);
  const detail = found.flatMap((c) => why.filter((w) => c.includes(folder(w.split(' -> ')[0])) && c.includes(folder(w.split(' -> ')[1]))));
  assert.deepEqual(found, [], detail.join('\n'));
});

test('the node is wired in src/node alone; one endpoint type', () => {
  const files = sourceFiles(SRC).map((f) => path.relative(SRC, f));
  assert.deepEqual(files.filter((f) => /wiring/i.test(path.basename(f)) && !f.startsWith('node/')), [], 'no wiring files outside src/node');
  const declared = files.filter((f) => /export (interface|type) \w*Endpoint\b(?!Id)/.test(fs.readFileSync(path.join(SRC, f), 'utf8')));
  assert.deepEqual(declared, ['datastore/endpoint-store.ts'], 'the endpoint type is declared once');
});
