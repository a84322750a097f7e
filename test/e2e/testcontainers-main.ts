// One testcontainers-node flow against DOCKER_HOST (set by the caller): a
// container started with a log wait strategy (its followed logs), exec with
// its exit code and both streams, a file copied in (an archive upload), stop
// and removal.
// Prints the results as one JSON line. testcontainers keeps one client per
// process (read from DOCKER_HOST once), so the test runs this once directly
// and once through the proxy, each in its own process.
// Usage: DOCKER_HOST=tcp://... TESTCONTAINERS_RYUK_DISABLED=true node testcontainers-main.js <image>
import { GenericContainer, Wait } from 'testcontainers';

let finished = false;
// A step whose promise never settles leaves nothing to wait for, and node
// would exit 0 with nothing printed: that is a failure, said as one.
process.on('beforeExit', () => {
  if (finished) return;
  console.error('testcontainers flow: a step never finished');
  process.exit(1);
});

async function main(): Promise<void> {
  const image = process.argv[2];
  const c = await new GenericContainer(image)
    .withCommand(['sh', '-c', 'echo ready; exec sleep 300'])
    .withLabels({ 'calico-test': 'testcontainers' })
    .withWaitStrategy(Wait.forLogMessage('ready'))
    .start();
  const exec = await c.exec(['sh', '-c', 'echo out; echo err >&2; exit 3']);
  await c.copyContentToContainer([{ content: 'copied in\n', target: '/tmp/copied' }]);
  const cat = await c.exec(['cat', '/tmp/copied']);
  const id = c.getId();
  await c.stop();
  process.stdout.write(
    JSON.stringify({
      exec: { exitCode: exec.exitCode, stdout: exec.stdout, stderr: exec.stderr },
      cat: { exitCode: cat.exitCode, output: cat.output },
      id: /^[0-9a-f]{64}$/.test(id),
    }) + '\n',
  );
  finished = true;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
