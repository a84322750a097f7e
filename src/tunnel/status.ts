// Pure: the tunnel's lines in `calicoctl status`, from what the node's tunnel
// component reported (the node's status file).
import type { TunnelStatus } from './tunnel';

export function renderTunnelStatus(s: TunnelStatus | undefined): string[] {
  if (!s || (!s.enabled && !s.error)) return [];
  const pools = s.pools.map((p) => `${p.cidr} ${p.mode}`).join(', ');
  if (s.error) return [`IP-in-IP (pools ${pools}): ${s.device} NOT in place: ${s.error}`];
  const lines = [
    `IP-in-IP (pools ${pools}): ${s.device} up, MTU ${s.mtu ?? 'unknown'}, address ${s.address ?? 'none (no block of this host in an IP-in-IP pool yet)'}` +
      `${s.underlay ? `; underlay ${s.underlay.dev} ${s.underlay.subnet}` : ''}; ${s.routes.length} route${s.routes.length === 1 ? '' : 's'} through it`,
  ];
  for (const r of s.routes) lines.push(`  ${r.dst} via ${r.via} (${r.host})`);
  return lines;
}
