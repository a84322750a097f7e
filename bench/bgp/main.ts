// bench/bgp: how soon a new container is reachable from another host, in the
// trinity lab (real BIRDs, real dockerds). For each of N containers started
// with `docker run -d -e CALICO_IP=auto` on trinity10 (through its proxy):
//   remote: first ping reply from a container on trinity20 (its own netns),
//   local:  first ping reply from a container on trinity10 (the baseline:
//           same host, same policy, no BGP; the host itself is not a member
//           of the containers' profile, so policy keeps it out),
// both timed from the moment `docker run -d` returned (the address is read
// with `docker inspect` inside that time). Node-to-node mesh first, then the
// router as route reflector (`calicoctl bgppeer rr add`). Targets: remote p99
// <= 2 s and <= 3x the local p99. Not a test: timings depend on the machine.
// Usage: node dist/bench/bgp/main.js [containers per mode, default 50]
import os from 'node:os';
import { teardownAll, waitFor } from '../../test/harness';
import { HOST_NAMES, ROUTER_IP, TrinityHost, firstReply, percentile, startTrinityLab } from '../../test/e2e/trinity-lab';
import { bgpSessions, parseBirdProtocols } from '../../src/bgp/status';

const POOL = '10.79.0.0/16';

async function established(h: TrinityHost, want: (types: string[]) => boolean): Promise<void> {
  await waitFor(`${h.name}'s BGP sessions`, async () => {
    const r = await h.birdc(['show', 'protocols']);
    const s = bgpSessions(parseBirdProtocols(r.stdout)).filter((x) => x.established);
    return want(s.map((x) => x.type));
  }, 30000, 200);
}

interface Row {
  remote: number;
  local: number;
}

async function mode(name: string, n: number, h10: TrinityHost, h20: TrinityHost): Promise<Row[]> {
  const from20 = await h20.containerNetns('probe20');
  const from10 = await h10.containerNetns('probe10');
  const rows: Row[] = [];
  for (let i = 0; i < n; i++) {
    const c = `b-${name}-${i}`;
    await h10.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', c, 'calico-test/busybox:latest', 'sleep', '1d']);
    const t0 = Date.now();
    const ip = (await h10.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c])).trim();
    const inspectMs = Date.now() - t0;
    const [remote, local] = await Promise.all([firstReply(from20, ip, 10000), firstReply(from10, ip, 10000)]);
    rows.push({ remote: inspectMs + remote, local: inspectMs + local });
  }
  const ids = (await h10.direct(['ps', '-aq', '--filter', `name=b-${name}-`])).stdout.split('\n').filter(Boolean);
  if (ids.length) await h10.direct(['rm', '-f', ...ids], { timeoutMs: 120000 });
  return rows;
}

function report(name: string, rows: Row[]): string {
  const r = rows.map((x) => x.remote);
  const l = rows.map((x) => x.local);
  const [r50, r99, l50, l99] = [percentile(r, 50), percentile(r, 99), percentile(l, 50), percentile(l, 99)];
  const ratio = l99 > 0 ? r99 / l99 : NaN;
  const ok = r99 <= 2000 && ratio <= 3;
  return (
    `${name.padEnd(5)} n=${rows.length}  remote (trinity20) p50 ${r50} ms p99 ${r99} ms  |  local (on trinity10) p50 ${l50} ms p99 ${l99} ms  |  ` +
    `p99 ratio ${ratio.toFixed(2)}x  ${ok ? 'within target' : 'MISSES target'} (p99 <= 2000 ms, <= 3x local)`
  );
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 50);
  console.log(`bench/bgp: ${n} containers per mode; ${os.cpus().length} cores, ${os.cpus()[0]?.model}`);
  const lab = await startTrinityLab();
  const h = lab.hosts;
  await h.trinity10.calicoctlOk(['pool', 'add', POOL]);
  for (const name of HOST_NAMES) await h[name].startNode();
  for (const name of HOST_NAMES) await established(h[name], (t) => t.filter((x) => x === 'mesh').length === 2);
  await h.trinity20.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'probe20', lab.image, 'sleep', '1d']);
  await h.trinity10.dockerOk(['run', '-d', '-e', 'CALICO_IP=auto', '--name', 'probe10', lab.image, 'sleep', '1d']);
  const mesh = await mode('mesh', n, h.trinity10, h.trinity20);
  await h.trinity10.calicoctlOk(['bgppeer', 'rr', 'add', ROUTER_IP]);
  for (const name of HOST_NAMES) await established(h[name], (t) => t.length === 1 && t[0] === 'rr');
  const rr = await mode('rr', n, h.trinity10, h.trinity20);
  console.log(report('mesh', mesh));
  console.log(report('rr', rr));
  const slow = [...mesh.map((x, i) => ({ mode: 'mesh', i, ...x })), ...rr.map((x, i) => ({ mode: 'rr', i, ...x }))].sort((a, b) => b.remote - a.remote).slice(0, 3);
  console.log(`slowest remote: ${slow.map((s) => `${s.mode}#${s.i} ${s.remote} ms (local ${s.local} ms)`).join(', ')}`);
}

main()
  .catch((e) => {
    console.error(`bench/bgp failed: ${(e as Error).stack}`);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());
