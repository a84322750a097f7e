// examples/compose/two-tier, run as its README says: profiles.sh loads the two
// profiles, docker-compose brings the project up through the proxy, and the
// db profile lets web reach db on 5432 only: web -> db:8080 and a container of
// another profile -> db:5432 are refused; down leaves nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { teardownAll, isRoot, onTeardown, run, CALICOCTL_MAIN } from '../harness';
import { CalicoLab } from './calico-lab';

after(teardownAll);
const skip = !isRoot() && 'needs root (netns, dockerd)';
const EXAMPLE = path.join(__dirname, '..', '..', '..', 'examples', 'compose', 'two-tier');

let lab: CalicoLab;

before(async () => {
  if (skip) return;
  lab = await CalicoLab.start({ pools: ['10.73.0.0/16'], gcGraceMs: 3000, sweepIntervalMs: 1500 });
});

test('examples/compose/two-tier: web reaches db on its port; another port and another profile are refused', { skip }, async () => {
  // The example's own script, with this checkout's calicoctl against the lab's etcd.
  const profiles = await lab.ns.exec('sh', [path.join(EXAMPLE, 'profiles.sh')], {
    env: { ...process.env, CALICOCTL: `${process.execPath} ${CALICOCTL_MAIN}`, ETCD_ENDPOINTS: 'http://127.0.0.1:2379' },
    timeoutMs: 60000,
  });
  assert.equal(profiles.code, 0, profiles.stdout + profiles.stderr);
  assert.match(profiles.stdout, /Successfully updated rules on profile web\n[^]*Successfully updated rules on profile db\n/);

  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: lab.proxyHost, COMPOSE_PROJECT_NAME: 'twotier', COMPOSE_INTERACTIVE_NO_CLI: '1', IMAGE: lab.image };
  delete env.DOCKER_CONTEXT;
  const compose = (args: string[]) => run('docker-compose', ['--ansi', 'never', '-f', path.join(EXAMPLE, 'docker-compose.yml'), ...args], { env, timeoutMs: 120000 });
  onTeardown('compose down', async () => {
    await compose(['down', '-t', '0']);
  });
  const up = await compose(['up', '-d']);
  assert.equal(up.code, 0, up.stderr);

  const id = async (svc: string) => (await compose(['ps', '-q', svc])).stdout.trim();
  const ip = async (svc: string) => (await lab.dockerOk(['inspect', '-f', '{{.NetworkSettings.Networks.calico.IPAddress}}', await id(svc)])).trim();
  const dbIp = await ip('db');
  assert.match(dbIp, /^10\.73\.\d+\.\d+$/);
  assert.match(await ip('web'), /^10\.73\.\d+\.\d+$/);

  // The example's echo services: what was sent comes back when the connection is allowed.
  const probe = ['sh', '-c', 'echo hello | nc -w 3 "$0" "$1"'];
  const nc = (svc: string, host: string, port: number) => compose(['exec', '-T', svc, ...probe, host, String(port)]);
  // Allowed: web -> db on the database port, by service name (compose's alias on the calico network).
  let ok = await nc('web', 'db', 5432);
  for (let i = 0; ok.stdout !== 'hello\n' && i < 20; i++) {
    // The db's nc may not listen yet right after `up -d`.
    await new Promise((r) => setTimeout(r, 250));
    ok = await nc('web', 'db', 5432);
  }
  assert.equal(ok.code, 0, `web -> db:5432: ${ok.stdout}${ok.stderr}`);
  assert.equal(ok.stdout, 'hello\n');
  // The db listens on 8080 too (it answers itself there), but web may not reach it there.
  const local = await nc('db', '127.0.0.1', 8080);
  assert.equal(local.stdout, 'hello\n', `db's own 8080: ${local.stderr}`);
  const otherPort = await nc('web', 'db', 8080);
  assert.notEqual(otherPort.stdout, 'hello\n', 'web -> db:8080 must be refused');
  // A container that is not in web's profile: refused on the database port.
  const intruder = await lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', '-e', 'CALICO_PROFILE=intruder', lab.image, ...probe, dbIp, '5432']);
  assert.notEqual(intruder.stdout, 'hello\n', 'intruder -> db:5432 must be refused');
  // ... and the same container in web's profile gets through (the refusal above was the profile, not the network).
  const asWeb = await lab.docker(['run', '--rm', '-e', 'CALICO_IP=auto', '-e', 'CALICO_PROFILE=web', lab.image, ...probe, dbIp, '5432']);
  assert.equal(asWeb.stdout, 'hello\n', `a web member -> db:5432: ${asWeb.stderr}`);

  const down = await compose(['down', '-t', '0']);
  assert.equal(down.code, 0, down.stderr);
  await lab.waitClean();
});
