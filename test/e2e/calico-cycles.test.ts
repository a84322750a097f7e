// Leak-free: after 200 mixed cycles (run --rm, run -d + rm -f, create + rm
// without start, rm and container prune on the real socket, the node
// SIGKILLed mid-start and restarted) nothing is allocated, recorded or plumbed. Cycles run four at a
// time, which also exercises concurrent creates and removals.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { teardownAll, isRoot, sleep } from '../harness';
import { CalicoLab } from './calico-lab';

after(teardownAll);

const CYCLES = 200;
const PARALLEL = 4;
const KILL_EVERY = 25;
let lab: CalicoLab;

before(async () => {
  if (!isRoot()) return;
  lab = await CalicoLab.start({ pools: ['10.66.0.0/16'], gcGraceMs: 3000, sweepIntervalMs: 1500 });
});

type Kind = 'run-rm' | 'run-d-rm-f' | 'create-rm' | 'rm-real-socket';
const KINDS: Kind[] = ['run-rm', 'run-d-rm-f', 'create-rm', 'rm-real-socket'];

async function cycle(kind: Kind, problems: string[]): Promise<void> {
  const env = ['-e', 'CALICO_IP=auto'];
  const check = (what: string, r: { code: number | null; stderr: string }) => {
    if (r.code !== 0) problems.push(`${kind} ${what}: exit ${r.code} ${r.stderr.trim()}`);
  };
  switch (kind) {
    case 'run-rm':
      check('run --rm', await lab.docker(['run', '--rm', ...env, lab.image, 'true']));
      return;
    case 'run-d-rm-f': {
      const r = await lab.docker(['run', '-d', ...env, lab.image, 'sleep', '1d']);
      check('run -d', r);
      if (r.code === 0) check('rm -f', await lab.docker(['rm', '-f', r.stdout.trim()]));
      return;
    }
    case 'create-rm': {
      const r = await lab.docker(['create', ...env, lab.image, 'true']);
      check('create', r);
      if (r.code === 0) check('rm', await lab.docker(['rm', r.stdout.trim()]));
      return;
    }
    case 'rm-real-socket': {
      const r = await lab.docker(['run', '-d', ...env, lab.image, 'sleep', '1d']);
      check('run -d', r);
      if (r.code === 0) check('rm -f on the real socket', await lab.direct(['rm', '-f', r.stdout.trim()]));
      return;
    }
  }
}

/** Containers that exited, removed by `container prune` on the real socket (never seen by the proxy). */
async function pruneRealSocket(problems: string[]): Promise<void> {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await lab.docker(['run', '-d', '-e', 'CALICO_IP=auto', lab.image, 'true']);
    if (r.code === 0) ids.push(r.stdout.trim());
    else problems.push(`prune: run -d: ${r.stderr.trim()}`);
  }
  for (const id of ids) await lab.direct(['wait', id]);
  const p = await lab.direct(['container', 'prune', '-f']);
  if (p.code !== 0) problems.push(`container prune: ${p.stderr.trim()}`);
}

/** A start in flight when the node dies: whatever it left is removed on the real socket, as an operator would. */
async function killMidStart(n: number): Promise<void> {
  const run = lab.docker(['run', '-d', '-e', 'CALICO_IP=auto', lab.image, 'sleep', '1d']);
  await sleep(50 + ((n * 97) % 400));
  await lab.killNode();
  await run;
  await lab.startNode();
  const left = (await lab.direct(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
  if (left.length) await lab.direct(['rm', '-f', ...left]);
}

test(`${CYCLES} mixed cycles leave zero addresses, zero cali* links, zero endpoint keys`, { skip: !isRoot(), timeout: 600000 }, async () => {
  const problems: string[] = [];
  const started = Date.now();
  let next = 0;
  let kills = 0;
  while (next < CYCLES) {
    if (Math.floor(next / KILL_EVERY) > kills) {
      // Serial steps: prune removes every stopped container, so nothing else may run.
      if (kills % 2) await pruneRealSocket(problems);
      await killMidStart(kills++);
      next++;
      continue;
    }
    const batch = Array.from({ length: Math.min(PARALLEL, CYCLES - next) }, (_, i) => KINDS[(next + i) % KINDS.length]);
    next += batch.length;
    await Promise.all(batch.map((k) => cycle(k, problems)));
  }
  assert.deepEqual(problems, [], 'every cycle succeeded');
  assert.equal((await lab.direct(['ps', '-aq'])).stdout.trim(), '', 'no container left');
  await lab.waitClean(30000);
  console.log(`# ${CYCLES} cycles (${kills} node kills) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
