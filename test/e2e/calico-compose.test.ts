// docker-compose 1.29 through the proxy with CALICO_IP in a service's
// environment: both services join the calico network with their own
// addresses and keep the aliases compose set (one reaches the other by
// service name); `down` leaves nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { teardownAll, isRoot, makeRunDir, onTeardown, removeTree, run } from '../harness';
import { CalicoLab } from './calico-lab';

after(teardownAll);

let lab: CalicoLab;

before(async () => {
  if (!isRoot()) return;
  lab = await CalicoLab.start({ pools: ['10.71.0.0/16'], gcGraceMs: 3000, sweepIntervalMs: 1500 });
});

test('compose: two CALICO_IP services, aliases kept, reachable by service name; down cleans up', { skip: !isRoot() }, async () => {
  const dir = await makeRunDir('compose');
  onTeardown(`removing ${dir}`, () => removeTree(dir));
  fs.writeFileSync(
    path.join(dir, 'docker-compose.yml'),
    [
      "version: '2.4'",
      'services:',
      '  web:',
      `    image: ${lab.image}`,
      '    command: sleep 1d',
      '    environment: [CALICO_IP=auto]',
      '  db:',
      `    image: ${lab.image}`,
      '    command: sleep 1d',
      '    environment: [CALICO_IP=10.71.3.3]',
      '',
    ].join('\n'),
  );
  const env = { ...process.env, DOCKER_HOST: lab.proxyHost, COMPOSE_PROJECT_NAME: 'calicot' };
  delete (env as Record<string, string | undefined>).DOCKER_CONTEXT;
  const compose = (args: string[]) => run('docker-compose', args, { cwd: dir, env, timeoutMs: 120000 });
  onTeardown('compose down', async () => {
    await compose(['down', '-t', '0']);
  });
  const up = await compose(['up', '-d']);
  assert.equal(up.code, 0, up.stderr);
  const ids = (await compose(['ps', '-q'])).stdout.split('\n').filter(Boolean);
  assert.equal(ids.length, 2);
  const addrs = await Promise.all(ids.map(async (id) => (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', id])).trim()));
  assert.ok(addrs.includes('10.71.3.3'), addrs.join(' '));
  for (const a of addrs) assert.match(a, /^10\.71\.\d+\.\d+$/);
  const aliases = await lab.dockerOk(['inspect', '-f', '{{json .NetworkSettings.Networks.calico.Aliases}}', ids[0]]);
  assert.match(aliases, /"(web|db)"/);
  const ping = await compose(['exec', '-T', 'web', 'ping', '-c', '1', '-W', '2', 'db']);
  assert.equal(ping.code, 0, `web -> db by name: ${ping.stdout}${ping.stderr}`);
  const down = await compose(['down', '-t', '0']);
  assert.equal(down.code, 0, down.stderr);
  await lab.waitClean();
});
