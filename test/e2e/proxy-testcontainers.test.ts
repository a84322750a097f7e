import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { teardownAll, run } from '../harness';
import { startProxyFixture, ProxyFixture } from './proxy-fixture';

// Checklist: testcontainers-node (dockerode underneath; followed logs for
// its wait strategy, hijacked exec streams, an archive upload) runs the same flow directly and
// through the proxy (issue 15: every real client keeps working). Its reaper
// (Ryuk) is off: its image would come from a registry, and there is none here.
// TESTCONTAINERS_HOST_OVERRIDE: inside a container, testcontainers looks for
// the gateway of dockerd's `bridge` network, which the test dockerd has not.

after(teardownAll);
let f: ProxyFixture;
before(async () => {
  f = await startProxyFixture();
});

async function flow(host: string): Promise<unknown> {
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: host, TESTCONTAINERS_RYUK_DISABLED: 'true', TESTCONTAINERS_HOST_OVERRIDE: 'localhost' };
  delete env.DOCKER_CONTEXT;
  const r = await run(process.execPath, [path.join(__dirname, 'testcontainers-main.js'), f.image], { env, timeoutMs: 120000 });
  assert.equal(r.code, 0, `testcontainers against ${host}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('testcontainers: start with a log wait, exec, copy in, stop give the same results through the proxy', async () => {
  const direct = await flow(f.d.host);
  const proxied = await flow(f.proxyHost);
  assert.deepEqual(proxied, direct);
  assert.deepEqual(direct, {
    exec: { exitCode: 3, stdout: 'out\n', stderr: 'err\n' },
    cat: { exitCode: 0, output: 'copied in\n' },
    id: true,
  });
  // Stopped and removed both ways: nothing of the flow is left on dockerd.
  const left = await f.direct(['ps', '-aq', '--filter', 'label=calico-test=testcontainers']);
  assert.equal(left.stdout.trim(), '');
});
