import { test } from 'node:test';
import assert from 'node:assert/strict';
import { birdPassword, meshEnabled, parseProtocolName, protocolName, renderBirdConfig, sessionsFor, BirdRenderError } from '../../src/bgp/render';
import { bgpPasswordProblem } from '../../src/datastore/schemas';
import { CASES } from './bgp-render-cases';

/** The `protocol bgp` stanzas of a config, one string each. */
function bgpProtocols(conf: string): string[] {
  return [...conf.matchAll(/^protocol bgp [^\n]*\{\n(?: [^\n]*\n)*\}/gm)].map((m) => m[0]);
}

/** A mesh session's channel: imports only what the peer's host holds. */
function held(family: 4 | 6, set: string): string {
  const v = family === 4 ? 'v4' : 'v6';
  return `\n  ipv${family} {\n    import filter {\n      if calico_in_pools_${v}() && net ~ [ ${set} ] then accept;\n      reject;\n    };\n  };`;
}

function block(conf: string, head: string): string {
  const i = conf.indexOf(head);
  assert.ok(i >= 0, `no "${head}" in:\n${conf}`);
  return conf.slice(i, conf.indexOf('\n}', i) + 2);
}

test('mesh of three hosts: one session per other host, AS 64511, router id = the host IPv4, lower address connects', () => {
  const conf = renderBirdConfig(CASES.mesh3!);
  assert.match(conf, /^router id 172\.16\.0\.20;$/m);
  assert.deepEqual(bgpProtocols(conf), [
    // 172.16.0.10 < 172.16.0.20: this host waits for it to connect.
    `protocol bgp Mesh_172_16_0_10 from calico_v4 {\n  neighbor 172.16.0.10 as 64511;\n  passive on;${held(4, '192.168.0.0/26+, 192.168.0.130/32')}\n}`,
    `protocol bgp Mesh_172_16_0_30 from calico_v4 {\n  neighbor 172.16.0.30 as 64511;${held(4, '192.168.0.128/26+, 192.168.0.192/26+')}\n}`,
  ]);
  assert.equal(
    block(conf, 'template bgp calico_v4'),
    [
      'template bgp calico_v4 {',
      '  local 172.16.0.20 as 64511;',
      '  multihop;',
      '  graceful restart;',
      '  # A peer that vanished (link or host gone, no TCP close) is declared down',
      '  # after 9 s instead of BIRD\'s default 240 s, and its routes withdrawn; a',
      '  # peer whose BIRD restarted closes the session and keeps its routes stale.',
      '  hold time 9;',
      '  keepalive time 3;',
      '  connect delay time 2;',
      '  connect retry time 5;',
      '  error wait time 5, 30;',
      '  ipv4 {',
      '    import filter calico_import_v4;',
      '    export filter calico_export_v4;',
      '    gateway recursive;',
      '    # Keep what each peer sent before the import filter: when a filter',
      '    # changes (a host claimed a block), BIRD filters it again at once',
      '    # instead of asking the peer to send everything again.',
      '    import table on;',
      '  };',
      '}',
    ].join('\n'),
  );
  assert.doesNotMatch(conf, /^\s*next hop self/m);
  assert.doesNotMatch(conf, /template bgp calico_v6/, 'no IPv6 address: no IPv6 sessions');
  assert.match(conf, /# No IPv6 address on this host: no IPv6 sessions\./);
  // Kernel: learns cali routes, keeps what BIRD put there when it stops.
  assert.equal(
    block(conf, 'protocol kernel Kernel_v4'),
    'protocol kernel Kernel_v4 {\n  learn;\n  persist;\n  scan time 10;\n  graceful restart;\n  ipv4 {\n    import all;\n    export filter calico_kernel_v4;\n  };\n}',
  );
  assert.match(block(conf, 'filter calico_kernel_v4'), /if source = RTS_BGP && calico_in_pools_v4\(\) then accept;\n  if proto = "Blocks_v4" then accept;\n  reject;/);
  assert.match(conf, /^protocol direct \{\n  ipv4;\n  ipv6;\n  interface -"cali\*", "\*";\n\}/m);
  assert.match(conf, /^graceful restart wait 60;$/m);
  // Deterministic, whatever order the input lists things in.
  const shuffled = { ...CASES.mesh3!, hosts: [...CASES.mesh3!.hosts].reverse() };
  assert.equal(renderBirdConfig(shuffled), conf);
});

test('route reflector mode (the blog post: router 64511 is the RR): peer with it only, mesh off, no next hop self', () => {
  const conf = renderBirdConfig(CASES.routeReflector!);
  assert.deepEqual(bgpProtocols(conf), ['protocol bgp Rr_172_16_0_1 from calico_v4 {\n  neighbor 172.16.0.1 as 64511;\n}']);
  assert.match(conf, /# Node-to-node mesh off\./);
  assert.doesNotMatch(conf, /^\s*next hop self/m);
  assert.equal(meshEnabled(CASES.routeReflector!), false);
});

test('global peer with another AS replaces the mesh unless the mesh is set on; the global AS is the local AS', () => {
  const conf = renderBirdConfig(CASES.globalPeer!);
  assert.deepEqual(bgpProtocols(conf), ['protocol bgp Global_172_16_0_254 from calico_v4 {\n  neighbor 172.16.0.254 as 65001;\n}']);
  assert.match(conf, /local 172\.16\.0\.10 as 64600;/);
  const both = sessionsFor(CASES.globalPeerWithMeshOn!).map((s) => `${s.type} ${s.neighbor} ${s.as}`);
  assert.deepEqual(both, ['global 172.16.0.254 65001', 'mesh 172.16.0.20 64511', 'mesh 172.16.0.30 64511']);
  // A global peer is the operator's: its imports are the pools (the template's filter), not a host's blocks.
  assert.doesNotMatch(bgpProtocols(renderBirdConfig(CASES.globalPeerWithMeshOn!))[0]!, /import/);
});

test('per-node AS: the local AS is this host\'s, each mesh peer has its own; a node peer that is also a host is declared once, as a node peer', () => {
  const conf = renderBirdConfig(CASES.perNodeAs!);
  assert.match(conf, /local 172\.16\.0\.10 as 64512;/);
  assert.match(conf, /# ---------- BGP sessions \(local AS 64512\) ----------/);
  assert.deepEqual(bgpProtocols(conf), [
    'protocol bgp Node_172_16_0_20 from calico_v4 {\n  neighbor 172.16.0.20 as 64513;\n}',
    'protocol bgp Node_172_16_0_253 from calico_v4 {\n  neighbor 172.16.0.253 as 65002;\n}',
    `protocol bgp Mesh_172_16_0_30 from calico_v4 {\n  neighbor 172.16.0.30 as 64511;${held(4, '192.168.0.128/26+, 192.168.0.192/26+')}\n}`,
  ]);
});

test('IPv6: sessions to IPv6 peers over an ipv6 channel, valid protocol names, hosts without IPv6 get only IPv4', () => {
  const conf = renderBirdConfig(CASES.ipv6!);
  assert.deepEqual(bgpProtocols(conf), [
    'protocol bgp Node_fd00__99 from calico_v6 {\n  neighbor fd00::99 as 65003;\n}',
    `protocol bgp Mesh_10_0_0_2 from calico_v4 {\n  neighbor 10.0.0.2 as 64511;${held(4, '192.168.1.64/26+')}\n}`,
    `protocol bgp Mesh_fd00__2 from calico_v6 {\n  neighbor fd00::2 as 64511;${held(6, 'fd80:24e2:f998:72d6::5/128, fd80:24e2:f998:72d6::80/122+')}\n}`,
    // c holds nothing: nothing comes in from it.
    'protocol bgp Mesh_10_0_0_3 from calico_v4 {\n  neighbor 10.0.0.3 as 64511;\n  ipv4 {\n    import none;\n  };\n}',
  ]);
  assert.match(block(conf, 'template bgp calico_v6'), /local fd00::1 as 64511;[\s\S]*ipv6 \{\n    import filter calico_import_v6;\n    export filter calico_export_v6;/);
  assert.match(block(conf, 'protocol static Blocks_v6'), /route fd80:24e2:f998:72d6::40\/122 blackhole;/);
});

test('export filter: only routes inside pools; an own block as its blackhole aggregate; borrowed addresses as their cali kernel routes, never more specifics of own blocks', () => {
  const conf = renderBirdConfig(CASES.mesh3!);
  assert.match(conf, /^function calico_in_pools_v4\(\) \{ return net ~ \[ 192\.168\.0\.0\/16\+ \]; \}$/m);
  assert.match(conf, /^function calico_in_pools_v6\(\) \{ return net ~ \[ fd80:24e2:f998:72d6::\/64\+ \]; \}$/m);
  assert.match(conf, /^function calico_in_blocks_v4\(\) \{ return net ~ \[ 192\.168\.0\.64\/26\+ \]; \}$/m);
  assert.equal(
    block(conf, 'filter calico_export_v4'),
    [
      'filter calico_export_v4 {',
      '  if !calico_in_pools_v4() then reject;',
      '  if proto = "Blocks_v4" && net ~ [ 192.168.0.64/26 ] then accept;',
      '  if proto = "Kernel_v4" && ifname ~ "cali*" && !calico_in_blocks_v4() then accept;',
      '  reject;',
      '}',
    ].join('\n'),
  );
  assert.equal(block(conf, 'filter calico_import_v4'), 'filter calico_import_v4 {\n  if calico_in_pools_v4() then accept;\n  reject;\n}');
  assert.equal(block(conf, 'protocol static Blocks_v4'), 'protocol static Blocks_v4 {\n  ipv4;\n  route 192.168.0.64/26 blackhole;\n}');
  // No pools: nothing is inside one, so nothing is exported or imported.
  const none = renderBirdConfig(CASES.noPools!);
  assert.match(none, /^function calico_in_pools_v4\(\) \{ return false; \}$/m);
  assert.match(none, /^function calico_in_blocks_v4\(\) \{ return false; \}$/m);
  assert.match(block(none, 'filter calico_export_v4'), /# \(no affine block\)/);
});

test('borrowed /32: exported when its kernel route is on a cali interface outside this host\'s blocks (no re-render needed per borrow)', () => {
  // 192.168.1.70 sits in a block affine to another host: calico_in_blocks_v4 is false for it.
  const conf = renderBirdConfig(CASES.ipv6!);
  assert.match(conf, /^function calico_in_blocks_v4\(\) \{ return net ~ \[ 192\.168\.1\.0\/26\+ \]; \}$/m);
  assert.match(block(conf, 'filter calico_export_v4'), /if proto = "Kernel_v4" && ifname ~ "cali\*" && !calico_in_blocks_v4\(\) then accept;/);
});

test('protocol names: sanitised, unique, and parsed back', () => {
  assert.equal(protocolName('mesh', '10.0.0.2'), 'Mesh_10_0_0_2');
  assert.equal(protocolName('mesh', 'fd00::2'), 'Mesh_fd00__2');
  assert.equal(protocolName('rr', 'FD00:0::0:2'), 'Rr_fd00__2');
  assert.equal(protocolName('global', '2001:db8:1:2:3:4:5:6'), 'Global_2001_db8_1_2_3_4_5_6');
  for (const [name, type, ip] of [
    ['Mesh_10_0_0_2', 'mesh', '10.0.0.2'],
    ['Mesh_fd00__2', 'mesh', 'fd00::2'],
    ['Node_1_2_3_4__', 'node', '1:2:3:4::'],
    ['Global_2001_db8_1_2_3_4_5_6', 'global', '2001:db8:1:2:3:4:5:6'],
  ] as const) {
    assert.deepEqual(parseProtocolName(name), { type, ip });
  }
  assert.equal(parseProtocolName('bgp1'), undefined);
  assert.equal(parseProtocolName('Kernel_v4'), undefined);
  const names = new Set(['10.0.0.2', '::a00:2', '1:2:3:4::', '1:2:3::4', '::1.2.3.4'].map((ip) => protocolName('mesh', ip)));
  assert.equal(names.size, 5);
  for (const n of names) assert.match(n, /^[A-Za-z][A-Za-z0-9_]*$/);
});

test('a host that is not registered or has no IPv4 cannot be rendered (no router id)', () => {
  assert.throws(() => renderBirdConfig({ ...CASES.mesh3!, hostname: 'ghost' }), (e: Error) => e instanceof BirdRenderError && /host ghost is not registered/.test(e.message));
  assert.throws(() => renderBirdConfig({ ...CASES.mesh3!, hosts: [{ host: 'trinity20' }] }), /has no IPv4 address/);
});

test('passwords: every kind of session renders its own, the mesh one on every mesh session, none where none is set', () => {
  const conf = renderBirdConfig(CASES.passwords!);
  const byName = Object.fromEntries(bgpProtocols(conf).map((p) => [/^protocol bgp (\S+)/.exec(p)![1]!, p]));
  assert.match(byName.Node_172_16_0_253!, /^ {2}password "node\/pw";$/m);
  assert.match(byName.Global_172_16_0_254!, new RegExp(`^ {2}password "${'~'.repeat(80)}";$`, 'm'));
  assert.match(byName.Rr_172_16_0_1!, /^ {2}password "rr'pw";$/m);
  assert.doesNotMatch(byName.Rr_172_16_0_2!, /password/, 'a route reflector without one has none');
  for (const mesh of ['Mesh_172_16_0_20', 'Mesh_172_16_0_30']) assert.match(byName[mesh]!, /^ {2}password "mesh pw \{;\} #1";$/m, mesh);
  assert.equal(bgpProtocols(conf).length, 6);
  assert.doesNotMatch(renderBirdConfig(CASES.mesh3!), /password/);
  // The session list carries it (the supervisor never logs it).
  assert.equal(sessionsFor(CASES.passwords!).find((s) => s.type === 'rr' && s.neighbor === '172.16.0.1')?.password, "rr'pw");
});

test('passwords BIRD cannot hold are refused, never altered: quotes, backslashes, newlines, control and non-ASCII characters, empty, over 80', () => {
  assert.equal(birdPassword('a b~!@#$%^&*(){}[];:\'<>,./?|`', 'X'), 'password "a b~!@#$%^&*(){}[];:\'<>,./?|`";');
  const bad: [string, RegExp][] = [
    ['a"b', /double quote/],
    ['pw";\n}\nprotocol bgp Evil {', /double quote/],
    ['a\\b', /backslash/],
    ['a\nb', /newline/],
    ['a\rb', /carriage return/],
    ['a\tb', /tab/],
    ['a\u0000b', /U\+0000/],
    ['pässword', /U\+00E4/],
    ['', /empty/],
    ['x'.repeat(81), /81 characters long; TCP MD5 allows at most 80/],
  ];
  for (const [pw, why] of bad) {
    assert.throws(() => birdPassword(pw, 'Mesh_10_0_0_2'), (e: Error) => e instanceof BirdRenderError && /session Mesh_10_0_0_2 cannot be used/.test(e.message) && why.test(e.message), JSON.stringify(pw));
    assert.match(bgpPasswordProblem(pw) ?? '', why);
  }
  // Through the whole renderer: the config is refused, so the running one stays.
  assert.throws(() => renderBirdConfig({ ...CASES.passwords!, config: { ...CASES.passwords!.config, meshPassword: 'x"y' } }), /password of session Mesh_172_16_0_20 cannot be used: the password contains a double quote/);
});

test('mesh imports: only the peer host\'s blocks (and anything inside) and its borrowed addresses; reflectors and external peers: the pools', () => {
  const conf = renderBirdConfig(CASES.mesh3!);
  // trinity10 may announce its block, more specifics inside it, and the one address it borrowed in trinity30's block.
  assert.match(bgpProtocols(conf)[0]!, /net ~ \[ 192\.168\.0\.0\/26\+, 192\.168\.0\.130\/32 \]/);
  // A host whose blocks change gets a new text (so the filter is reloaded).
  const more = renderBirdConfig({ ...CASES.mesh3!, hostRoutes: { ...CASES.mesh3!.hostRoutes, trinity30: { blocks: ['192.168.0.128/26', '192.168.0.192/26', '192.168.5.0/26'], borrowed: [] } } });
  assert.match(bgpProtocols(more)[1]!, /net ~ \[ 192\.168\.0\.128\/26\+, 192\.168\.0\.192\/26\+, 192\.168\.5\.0\/26\+ \]/);
  assert.equal(bgpProtocols(more)[0], bgpProtocols(conf)[0], 'the other peer\'s session is unchanged');
  // Route reflector sessions keep the template's pool filter.
  assert.deepEqual(bgpProtocols(renderBirdConfig(CASES.routeReflector!)), ['protocol bgp Rr_172_16_0_1 from calico_v4 {\n  neighbor 172.16.0.1 as 64511;\n}']);
  assert.equal(block(conf, 'filter calico_import_v4'), 'filter calico_import_v4 {\n  if calico_in_pools_v4() then accept;\n  reject;\n}');
});
