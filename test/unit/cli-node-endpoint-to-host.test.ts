// `calicoctl node --endpoint-to-host-action` (env CALICO_ENDPOINT_TO_HOST_ACTION):
// documented in --help, and a value other than drop|accept is refused before
// anything starts, whichever way it came.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../harness/exec';
import { CALICOCTL_MAIN } from '../harness';

const env: NodeJS.ProcessEnv = { ...process.env, ETCD_ENDPOINTS: 'http://127.0.0.1:1' };
delete env.CALICO_ENDPOINT_TO_HOST_ACTION;

test('node --endpoint-to-host-action: in --help with its default and env; bad values refused by flag and by env', async () => {
  const help = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--help'], { env, timeoutMs: 20000 });
  assert.equal(help.code, 0, help.stderr);
  const text = help.stdout.replace(/\s+/g, ' ');
  assert.match(text, /--endpoint-to-host-action <ACTION> containers' traffic to this host's own addresses/);
  assert.match(text, /\(choices: "drop", "accept", default: "drop", env: CALICO_ENDPOINT_TO_HOST_ACTION\)/);

  const flag = await run(process.execPath, [CALICOCTL_MAIN, 'node', '--endpoint-to-host-action', 'allow'], { env, timeoutMs: 20000 });
  assert.notEqual(flag.code, 0);
  assert.match(flag.stderr, /'allow' is invalid\. Allowed choices are drop, accept/);
  const fromEnv = await run(process.execPath, [CALICOCTL_MAIN, 'node'], { env: { ...env, CALICO_ENDPOINT_TO_HOST_ACTION: 'ACCEPT' }, timeoutMs: 20000 });
  assert.notEqual(fromEnv.code, 0);
  assert.match(fromEnv.stderr, /'ACCEPT' from env 'CALICO_ENDPOINT_TO_HOST_ACTION' is invalid/);
});
