// bench/ipip: how soon a new container is reachable from another host with
// IP-in-IP, against the routed case, in one run on the trinity lab (real
// BIRDs, real dockerds, one LAN). For each of N containers started with
// `docker run -d -e CALICO_IP=auto` on trinity10: the first ping reply from
// a container on trinity20, timed from the moment `docker run -d` returned
// (the address read with `docker inspect` inside that time). First the pool
// routed (BGP alone), then the same pool with `pool add --ipip` (BGP's block
// claim reaches trinity20's node, which routes it through tunl0). Prints
// p50/p99 of both and their ratio, and the load average. Not a test:
// timings depend on the machine. On a kernel without IP-in-IP the node says
// so and the bench prints that instead of the second row.
// Usage: node dist/bench/ipip/main.js [containers per mode, default 30]
import os from 'node:os';
import { teardownAll, waitFor } from '../../test/harness';
import { HOST_NAMES, TrinityHost, firstReply, percentile, startTrinityLab } from '../../test/e2e/trinity-lab';
import { bgpSessions, parseBirdProtocols } from '../../src/bgp/status';
import { readStatusFile } from '../../src/node/status-file';
import type { TunnelStatus } from '../../src/tunnel/tunnel';

const POOL = '10.81.0.0/16';

async function rows(name: string, n: number, h10: TrinityHost, h20: TrinityHost): Promise<number[]> {
  const from20 = await h20.containerNetns('probe20');
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = `b-${name}-${i}`;
    await h10.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', c, 'calico-test/busybox:latest', 'sleep', '1d']);
    const t0 = Date.now();
    const ip = (await h10.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c])).trim();
    out.push(Date.now() - t0 + (await firstReply(from20, ip, 10000)));
  }
  const ids = (await h10.direct(['ps', '-aq', '--filter', `name=b-${name}-`])).stdout.split('\n').filter(Boolean);
  if (ids.length) await h10.direct(['rm', '-f', ...ids], { timeoutMs: 120000 });
  return out;
}

const line = (name: string, ms: number[]) => `${name.padEnd(6)} n=${ms.length}  docker run -> first reply from trinity20: p50 ${percentile(ms, 50)} ms, p99 ${percentile(ms, 99)} ms`;
const load = () => `load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`;

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 30);
  console.log(`bench/ipip: ${n} containers per mode; ${os.cpus().length} cores, ${os.cpus()[0]?.model}; ${load()}`);
  const lab = await startTrinityLab();
  const h = lab.hosts;
  await h.trinity10.calicoctlOk(['pool', 'add', POOL]);
  for (const name of HOST_NAMES) await h[name].startNode();
  for (const name of HOST_NAMES) {
    await waitFor(`${name}'s mesh`, async () => bgpSessions(parseBirdProtocols((await h[name].birdc(['show', 'protocols'])).stdout)).filter((s) => s.established).length === 2, 30000, 200);
  }
  await h.trinity20.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'probe20', lab.image, 'sleep', '1d']);
  const routed = await rows('routed', n, h.trinity10, h.trinity20);
  console.log(`${line('routed', routed)}  (${load()})`);
  await h.trinity10.calicoctlOk(['pool', 'add', POOL, '--ipip']);
  const st = await waitFor('the tunnels', async () => {
    const s = HOST_NAMES.map((x) => readStatusFile(h[x].stateDir)?.components.tunnel as TunnelStatus | undefined);
    return s.every((x) => x?.enabled && (x.error || x.routes.length)) && s;
  }, 15000, 100);
  const broken = st.find((s) => s?.error);
  if (broken) {
    console.log(`ipip   not measured: ${broken.error}`);
    return;
  }
  const ipip = await rows('ipip', n, h.trinity10, h.trinity20);
  console.log(`${line('ipip', ipip)}  (${load()})`);
  const r = (p: number) => (percentile(ipip, p) / percentile(routed, p)).toFixed(2);
  console.log(`ipip / routed: p50 ${r(50)}x, p99 ${r(99)}x (same run)`);
}

main()
  .catch((e) => {
    console.error(`bench/ipip failed: ${(e as Error).stack}`);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());
