import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { teardownAll, run, RunResult, waitFor } from '../harness';
import { startProxyFixture, ProxyFixture, assertSame } from './proxy-fixture';

// Checklist: docker-compose 1.29 (docker-py underneath) runs the two-service
// example project the same way directly and through the proxy.

after(teardownAll);
let f: ProxyFixture;
const compose = path.join(__dirname, '..', '..', '..', 'examples', 'compose', 'docker-compose.yml');
before(async () => {
  f = await startProxyFixture();
});

function dc(host: string, args: string[]): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: host, COMPOSE_INTERACTIVE_NO_CLI: '1' };
  delete env.DOCKER_CONTEXT;
  return run('docker-compose', ['--no-ansi', '-p', 'calicoex', '-f', compose, ...args], { env, timeoutMs: 120000 });
}

// Compose creates and stops services in parallel: line order varies from run to run, directly too.
const sortLines = (s: string) => s.split('\n').map((l) => l.trimEnd()).filter(Boolean).sort().join('\n');

test('compose: up -d, logs, exec, ps, down give the same results through the proxy', async () => {
  const results: Record<string, RunResult[]> = { direct: [], proxy: [] };
  for (const [via, host] of [['direct', f.d.host], ['proxy', f.proxyHost]] as const) {
    const up = await dc(host, ['up', '-d']);
    assert.equal(up.code, 0, `${via}: ${up.stderr}`);
    await waitFor(`${via}: both services ready`, async () => {
      const l = await dc(host, ['logs', '--no-color']);
      return l.stdout.includes('web ready') && l.stdout.includes('worker ready');
    }, 30000, 300);
    const logs = await dc(host, ['logs', '--no-color']);
    const exec = await dc(host, ['exec', '-T', 'web', 'wget', '-qO-', 'localhost:8080/hostname']);
    const ps = await dc(host, ['ps']);
    const down = await dc(host, ['down']);
    results[via] = [up, logs, exec, ps, down];
    assert.equal(down.code, 0, `${via}: ${down.stderr}`);
  }
  const names = ['up -d', 'logs', 'exec', 'ps', 'down'];
  names.forEach((n, i) => {
    const norm = (r: RunResult): RunResult => ({ ...r, stdout: sortLines(r.stdout), stderr: sortLines(r.stderr) });
    // exec prints the container's hostname (its short id): differs by design between the two runs.
    const mask = n === 'exec' ? (s: string) => s.replace(/^[0-9a-f]{12}$/m, '<hostname>') : undefined;
    assertSame(`docker-compose ${n}`, norm(results.direct[i]), norm(results.proxy[i]), mask);
  });
  assert.match(results.proxy[1].stdout, /web_1\s+\| web ready/);
  assert.match(results.proxy[3].stdout, /calicoex_web_1 .* Up/);
  assert.match(results.proxy[2].stdout, /^[0-9a-f]{12}\n$/);
});
