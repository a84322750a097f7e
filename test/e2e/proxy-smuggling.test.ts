// Request smuggling against a running node (a CalicoLab: its own etcd,
// dockerd 20.10 and node process) with raw bytes: every input on which an
// HTTP reader or a JSON reader could disagree with dockerd's (Go net/http,
// gorilla/mux, encoding/json) carries a full create whose Env asks for
// CALICO_IP. For each, the create is either intercepted (the container is on
// the calico network) or refused (4xx, no container): at the end, no
// container of dockerd's has CALICO_IP in its Env and another network.
// Web pages: Origin / Sec-Fetch-* creates and a DNS-rebound Host get 403
// and create nothing.
//
// The node listens on a unix socket here (the lab's node lives in its own
// network namespace); the framing does not depend on the transport. The
// Host check, which applies to loopback TCP listeners only, is exercised on
// a proxy on 127.0.0.1 in front of the same dockerd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { teardownAll, isRoot, onTeardown } from '../harness';
import { CalicoLab } from './calico-lab';
import { calicoNetworkName } from '../../src/names';
import { DockerProxy } from '../../src/proxy';
import { silentLogger } from '../../src/log/logger';

after(teardownAll);

let lab: CalicoLab;

before(async () => {
  if (!isRoot()) return;
  lab = await CalicoLab.start({ pools: ['10.73.0.0/24'], gcGraceMs: 3000, sweepIntervalMs: 1500 });
});

/** Statuses of the answers on one connection, read until it closes (or `ms`). */
function converse(bytes: Buffer | Buffer[], where: { path: string } | { port: number } = { path: lab.proxySocket }, ms = 15000): Promise<{ statuses: number[]; text: string }> {
  return new Promise((resolve) => {
    const s = 'path' in where ? net.connect(where.path) : net.connect(where.port, '127.0.0.1');
    const got: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      const text = Buffer.concat(got).toString('latin1');
      resolve({ statuses: [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1])), text });
    };
    const timer = setTimeout(done, ms);
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => undefined);
    s.on('close', done);
    s.once('connect', async () => {
      for (const b of Array.isArray(bytes) ? bytes : [bytes]) {
        s.write(b);
        await new Promise((r) => setTimeout(r, 50));
      }
    });
  });
}

const body = (label: string, extra = '') => `{"Image":"${lab.image}","Cmd":["true"],"Env":["CALICO_IP=auto"],"Labels":{"smuggle":"${label}"}${extra}}`;
const head = (target: string, headers: string[], method = 'POST', version = 'HTTP/1.1', eol = '\r\n') =>
  [`${method} ${target} ${version}`, 'Host: docker', 'Content-Type: application/json', ...headers].join(eol) + eol + eol;
const create = (label: string, target = '/v1.41/containers/create', more: string[] = ['Connection: close']) => {
  const b = body(label);
  return head(target, [`Content-Length: ${Buffer.byteLength(b)}`, ...more]) + b;
};

interface Case {
  name: string;
  bytes: () => Buffer | Buffer[];
  /** What must happen to the create labelled with `name`. */
  want: 'intercepted' | 'refused' | 'not created';
}

const L = (s: string) => Buffer.from(s, 'latin1');

const CASES: Case[] = [
  { name: 'baseline', bytes: () => L(create('baseline')), want: 'intercepted' },
  // An Upgrade on a call no interceptor takes used to turn the connection into a raw pipe.
  { name: 'upgrade-ping', bytes: () => L(head('/_ping', ['Connection: Upgrade', 'Upgrade: tcp'], 'GET') + create('upgrade-ping')), want: 'intercepted' },
  // dockerd's attach hijacks before it looks the container up: its 404 is unframed and it closes (nothing after is read).
  { name: 'upgrade-refused-attach', bytes: () => L(head('/v1.41/containers/nosuch/attach?stream=1', ['Connection: Upgrade', 'Upgrade: tcp', 'Content-Length: 0']) + create('upgrade-refused-attach')), want: 'not created' },
  { name: 'upgrade-refused-attach-later', bytes: () => [L(head('/v1.41/containers/nosuch/attach?stream=1', ['Connection: Upgrade', 'Upgrade: tcp', 'Content-Length: 0'])), L(create('upgrade-refused-attach-later'))], want: 'not created' },
  // exec start looks the exec up first: a framed 404, and the connection goes on framed.
  { name: 'upgrade-refused-exec', bytes: () => L(head('/v1.41/exec/nosuch/start', ['Connection: Upgrade', 'Upgrade: tcp', 'Content-Length: 2']) + '{}' + create('upgrade-refused-exec')), want: 'intercepted' },
  {
    name: 'obs-fold',
    bytes: () => {
      const b = body('obs-fold');
      return L(head('/v1.41/containers/create', ['X-A: a', ` Content-Length: ${b.length}`, 'Connection: close']) + b);
    },
    want: 'refused',
  },
  {
    name: 'te-http10',
    bytes: () => {
      const b = body('te-http10');
      return L(head('/v1.41/containers/create', ['Transfer-Encoding: chunked', `Content-Length: ${b.length}`], 'POST', 'HTTP/1.0') + b);
    },
    want: 'refused',
  },
  {
    name: 'te-and-cl',
    bytes: () => {
      const b = body('te-and-cl');
      return L(head('/v1.41/containers/create', ['Transfer-Encoding: chunked', 'Content-Length: 4', 'Connection: close']) + `${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`);
    },
    want: 'refused',
  },
  {
    name: 'cl-twice',
    bytes: () => {
      const b = body('cl-twice');
      return L(head('/v1.41/containers/create', ['Content-Length: 2', `Content-Length: ${b.length}`, 'Connection: close']) + b);
    },
    want: 'refused',
  },
  {
    name: 'cl-plus',
    bytes: () => {
      const b = body('cl-plus');
      return L(head('/v1.41/containers/create', [`Content-Length: +${b.length}`, 'Connection: close']) + b);
    },
    want: 'refused',
  },
  {
    name: 'chunk-ext',
    bytes: () => {
      const b = body('chunk-ext');
      return L(head('/v1.41/containers/create', ['Transfer-Encoding: chunked', 'Connection: close']) + `${b.length.toString(16)};x=y\r\n${b}\r\n0\r\n\r\n`);
    },
    want: 'refused',
  },
  {
    name: 'chunk-bare-lf',
    bytes: () => {
      const b = body('chunk-bare-lf');
      return L(head('/v1.41/containers/create', ['Transfer-Encoding: chunked', 'Connection: close']) + `${b.length.toString(16)}\n${b}\n0\n\n`);
    },
    want: 'refused',
  },
  {
    name: 'bare-lf-head',
    bytes: () => {
      const b = body('bare-lf-head');
      return L(head('/v1.41/containers/create', [`Content-Length: ${b.length}`, 'Connection: close'], 'POST', 'HTTP/1.1', '\n') + b);
    },
    want: 'intercepted',
  },
  { name: 'version-dot', bytes: () => L(create('version-dot', '/v1.41./containers/create')), want: 'intercepted' },
  { name: 'double-slash', bytes: () => L(create('double-slash', '//containers/create')), want: 'refused' },
  { name: 'dot-segment', bytes: () => L(create('dot-segment', '/v1.41/x/../containers/create')), want: 'refused' },
  { name: 'percent-letter', bytes: () => L(create('percent-letter', '/containers/%63reate')), want: 'intercepted' },
  { name: 'percent-slash', bytes: () => L(create('percent-slash', '/v1.41/containers%2Fcreate')), want: 'intercepted' },
  { name: 'absolute-form', bytes: () => L(create('absolute-form', 'http://x/v1.41/containers/create')), want: 'refused' },
  {
    name: 'lower-case-method',
    bytes: () => {
      const b = body('lower-case-method');
      return L(head('/v1.41/containers/create', [`Content-Length: ${b.length}`, 'Connection: close'], 'post') + b);
    },
    want: 'refused',
  },
  // The create body read as Go's encoding/json reads it.
  ...([
    ['json-lower-env', `{"Image":"IMG","Cmd":["true"],"env":["CALICO_IP=auto"],"Labels":{"smuggle":"json-lower-env"}}`, 'intercepted'],
    ['json-escaped-value', `{"Image":"IMG","Cmd":["true"],"Env":["CALICO\\u005fIP=auto"],"Labels":{"smuggle":"json-escaped-value"}}`, 'intercepted'],
    ['json-escaped-key', `{"Image":"IMG","Cmd":["true"],"\\u0045nv":["CALICO_IP=auto"],"Labels":{"smuggle":"json-escaped-key"}}`, 'intercepted'],
    ['json-last-env-wins', `{"Image":"IMG","Cmd":["true"],"Env":["X=1"],"ENV":["CALICO_IP=auto"],"Labels":{"smuggle":"json-last-env-wins"}}`, 'intercepted'],
    ['json-null-element', `{"Image":"IMG","Cmd":["true"],"Env":["CALICO_IP=auto"],"Env":[null],"Labels":{"smuggle":"json-null-element"}}`, 'refused'],
    ['json-image-null-dup', `{"Image":"IMG","Image":null,"Cmd":["true"],"Env":["CALICO_IP=auto"],"Labels":{"smuggle":"json-image-null-dup"}}`, 'intercepted'],
    ['json-trailing', `{"Image":"IMG","Cmd":["true"],"Env":["CALICO_IP=auto"],"Labels":{"smuggle":"json-trailing"}} x`, 'intercepted'],
    ['json-host-folded', `{"Image":"IMG","Cmd":["true"],"Env":["CALICO_IP=auto"],"hostconfig":{"NetworkMode":"host"},"Labels":{"smuggle":"json-host-folded"}}`, 'refused'],
    ['json-host-top-level', `{"Image":"IMG","Cmd":["true"],"Env":["CALICO_IP=auto"],"NetworkMode":"host","Labels":{"smuggle":"json-host-top-level"}}`, 'refused'],
    ['json-two-hostconfigs', `{"Image":"IMG","Cmd":["true"],"Env":["CALICO_IP=auto"],"HostConfig":{"NetworkMode":"bridge"},"hostconfig":{"AutoRemove":false},"Labels":{"smuggle":"json-two-hostconfigs"}}`, 'intercepted'],
    ['json-two-label-maps', `{"Image":"IMG","Cmd":["true"],"Env":["CALICO_IP=auto"],"labels":{"a":"1"},"Labels":{"smuggle":"json-two-label-maps"}}`, 'intercepted'],
  ] as const).map(([name, json, want]): Case => ({
    name,
    bytes: () => {
      const b = Buffer.from(json.replace('IMG', lab.image));
      return Buffer.concat([L(head('/v1.41/containers/create', [`Content-Length: ${b.length}`, 'Connection: close'])), b]);
    },
    want,
  })),
];

/** Every container dockerd has, as it reports them. */
async function inspectAll(): Promise<{ id: string; env: string[]; labels: Record<string, string>; mode: string; networks: string[] }[]> {
  const ids = (await lab.direct(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
  if (!ids.length) return [];
  const r = await lab.direct(['inspect', ...ids]);
  const all = JSON.parse(r.stdout) as { Id: string; Config: { Env: string[] | null; Labels: Record<string, string> | null }; HostConfig: { NetworkMode: string }; NetworkSettings: { Networks: Record<string, unknown> } }[];
  return all.map((c) => ({ id: c.Id, env: c.Config.Env ?? [], labels: c.Config.Labels ?? {}, mode: c.HostConfig.NetworkMode, networks: Object.keys(c.NetworkSettings.Networks ?? {}) }));
}

test('request smuggling: every ambiguous create is intercepted onto the calico network or refused; none lands elsewhere', { skip: !isRoot() && 'needs root' }, async () => {
  const outcomes: string[] = [];
  for (const c of CASES) {
    const r = await converse(c.bytes());
    outcomes.push(`${c.name}: ${r.statuses.join(',') || 'closed'}`);
    const containers = (await inspectAll()).filter((k) => k.labels.smuggle === c.name);
    if (c.want === 'intercepted') {
      assert.equal(containers.length, 1, `${c.name}: one container expected (${r.statuses}): ${r.text.slice(0, 400)}`);
      assert.equal(containers[0].mode, calicoNetworkName(), `${c.name}: on the calico network`);
      assert.ok(containers[0].labels['org.projectcalico.handle'], `${c.name}: carries its reservation handle`);
    } else if (c.want === 'not created') {
      assert.equal(containers.length, 0, `${c.name}: nothing created (${r.statuses}): ${r.text.slice(0, 400)}`);
    } else {
      assert.equal(containers.length, 0, `${c.name}: nothing created (${r.statuses}): ${r.text.slice(0, 400)}`);
      assert.ok(r.statuses.some((s) => s >= 400 && s < 500), `${c.name}: refused 4xx, got ${r.statuses}: ${r.text.slice(0, 400)}`);
      assert.match(r.text, /\{"message":"/, `${c.name}: Docker's error shape`);
    }
  }
  console.log(outcomes.join('\n'));
  const landed = (await inspectAll()).filter((k) => k.env.some((e) => e.startsWith('CALICO_IP')));
  for (const k of landed) assert.deepEqual([k.mode, k.networks], [calicoNetworkName(), [calicoNetworkName()]], `container ${k.id} (${k.labels.smuggle}) has CALICO_IP and another network`);
  assert.ok(landed.length >= CASES.filter((c) => c.want === 'intercepted').length);
  await lab.direct(['rm', '-f', ...landed.map((k) => k.id)]);
  await lab.waitClean();
});

test('closed to web pages: Origin or Sec-Fetch-* creates get 403 and create nothing; an allowed client still gets through', { skip: !isRoot() && 'needs root' }, async () => {
  for (const [name, h] of [['origin', 'Origin: http://evil.example'], ['sec-fetch', 'Sec-Fetch-Site: cross-site'], ['origin-null', 'Origin: null'], ['sec-fetch-mode', 'Sec-Fetch-Mode: no-cors']] as const) {
    const r = await converse(L(create(`web-${name}`, '/v1.41/containers/create', [h, 'Connection: close'])));
    assert.deepEqual(r.statuses, [403], `${name}: ${r.text}`);
    assert.match(r.text, /"message":"calico proxy: requests from web pages are refused: /);
  }
  // What browsers send for a form POST to /build (the published technique): refused before dockerd sees it.
  const build = await converse(L(head('/build?remote=https://example.invalid/x.git&networkmode=host', ['Origin: http://evil.example', 'Sec-Fetch-Mode: no-cors', 'Content-Length: 0', 'Connection: close'])));
  assert.deepEqual(build.statuses, [403]);
  assert.deepEqual((await inspectAll()).filter((k) => k.labels.smuggle?.startsWith('web-')), []);
});

test('closed to web pages: on a loopback TCP listener a DNS-rebound Host gets 403; loopback names pass', { skip: !isRoot() && 'needs root' }, async () => {
  const p = new DockerProxy({ listen: 'tcp://127.0.0.1:0', upstream: `unix://${lab.dockerd.socket}`, allowOrigins: ['http://localhost:9000'] }, silentLogger());
  await p.start();
  onTeardown('tcp proxy', () => p.stop());
  const port = p.address.kind === 'tcp' ? p.address.port : 0;
  const b = body('web-rebound');
  const rebound = await converse(L(`POST /v1.41/containers/create HTTP/1.1\r\nHost: evil.example:${port}\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\nConnection: close\r\n\r\n${b}`), { port });
  assert.deepEqual(rebound.statuses, [403], rebound.text);
  assert.match(rebound.text, /Host \\"evil\.example:\d+\\" names neither localhost nor a loopback address/);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost', '127.0.0.1']) {
    const ok = await converse(L(`GET /_ping HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), { port });
    assert.deepEqual(ok.statuses, [200], `${host}: ${ok.text}`);
  }
  // The operator's allowed origin (a local web UI) gets through.
  const allowed = await converse(L(`GET /_ping HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://localhost:9000\r\nSec-Fetch-Mode: cors\r\nConnection: close\r\n\r\n`), { port });
  assert.deepEqual(allowed.statuses, [200], allowed.text);
  // The docker CLI through it, as users run it.
  const cli = await lab.dockerd.docker(['version', '--format', '{{.Server.Version}}'], { host: `tcp://127.0.0.1:${port}`, timeoutMs: 30000 });
  assert.equal(cli.code, 0, cli.stderr);
  assert.deepEqual((await inspectAll()).filter((k) => k.labels.smuggle === 'web-rebound'), []);
});
