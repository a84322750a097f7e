// The create body read as dockerd's Go decoder reads it, and rewritten so
// dockerd reads the rewrite as intended: keys matched case-insensitively,
// escapes decoded, repeats decoded in turn (encoding/json decode.go), the
// deprecated top-level HostConfig fields (moby 20.10 runconfig
// ContainerConfigWrapper).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HANDLE_LABEL, PROFILES_LABEL } from '../../src/names';
import { RequestRefused, parseCalicoEnv } from '../../src/endpoints/calico-env';
import { checkNetworkMode } from '../../src/proxy/interceptors/calico-request';
import { planRewrite, readCreateBody, rewriteCreate } from '../../src/proxy/interceptors/create-body';
import { GoJsonError, goFold, parseGoJson } from '../../src/proxy/interceptors/go-json';

/** 'ours', 'not ours' or 'refused <status>', as the create interceptor decides. */
function decide(body: string): string {
  try {
    const v = readCreateBody(Buffer.from(body));
    const wanted = v && parseCalicoEnv(v.env);
    if (!v || !wanted) return 'not ours';
    checkNetworkMode(v.networkMode);
    planRewrite(v);
    return 'ours';
  } catch (e) {
    if (e instanceof RequestRefused) return `refused ${e.status}`;
    throw e;
  }
}

const CASES: [string, string, string][] = [
  ['exact Env', '{"Image":"a","Env":["CALICO_IP=auto"]}', 'ours'],
  ['lower-case key', '{"Image":"a","env":["CALICO_IP=auto"]}', 'ours'],
  ['upper-case key', '{"Image":"a","ENV":["CALICO_IP=auto"]}', 'ours'],
  ['escaped key', '{"Image":"a","\\u0045nv":["CALICO_IP=auto"]}', 'ours'],
  ['escaped value', '{"Image":"a","Env":["CALICO\\u005fIP=auto"]}', 'ours'],
  ['escaped value, surrogates elsewhere', '{"Env":["X=\\ud83d\\ude00","CALICO_\\u0049P=auto"]}', 'ours'],
  ['last of duplicate keys wins (ours)', '{"Env":["X=1"],"env":["CALICO_IP=auto"]}', 'ours'],
  ['last of duplicate keys wins (not ours)', '{"Env":["CALICO_IP=auto"],"env":["X=1"]}', 'not ours'],
  ['a null Env clears it', '{"Env":["CALICO_IP=auto"],"Env":null}', 'not ours'],
  ['a null element next to CALICO_ is ambiguous across Go versions', '{"Env":["CALICO_IP=auto"],"Env":[null]}', 'refused 400'],
  ['a null element alone is harmless', '{"Env":["X=1"],"Env":[null,"Y=2"]}', 'not ours'],
  ['a non-string element is refused (Go: UnmarshalTypeError)', '{"Env":["CALICO_IP=auto",5]}', 'refused 400'],
  ['trailing content after the first value (Decoder reads the first)', '{"Env":["CALICO_IP=auto"]} {"x":1}', 'ours'],
  ['not JSON is refused, never passed unread', '{"Env":["CALICO_IP=auto"],}', 'refused 400'],
  ['bad escape', '{"Env":["CALICO_IP=auto\\x"]}', 'refused 400'],
  ['not an object', '["CALICO_IP=auto"]', 'not ours'],
  ['host network under a folded key (U+017F)', '{"Env":["CALICO_IP=auto"],"Ho\u017ftConfig":{"NetworkMode":"host"}}', 'refused 400'],
  ['host network at the top level (deprecated embedded HostConfig)', '{"Env":["CALICO_IP=auto"],"NetworkMode":"host"}', 'refused 400'],
  ['inner HostConfig wins over the top level', '{"Env":["CALICO_IP=auto"],"NetworkMode":"host","HostConfig":{}}', 'ours'],
  ['repeated HostConfig objects merge', '{"Env":["CALICO_IP=auto"],"HostConfig":{"NetworkMode":"host"},"hostconfig":{"Memory":1}}', 'refused 400'],
  ['a null HostConfig clears what came before', '{"Env":["CALICO_IP=auto"],"HostConfig":{"NetworkMode":"host"},"HostConfig":null,"HostConfig":{}}', 'ours'],
  ['a null NetworkMode changes nothing', '{"Env":["CALICO_IP=auto"],"HostConfig":{"NetworkMode":"host","networkmode":null}}', 'refused 400'],
  ['NetworkMode of another type', '{"Env":["CALICO_IP=auto"],"HostConfig":{"NetworkMode":1}}', 'refused 400'],
  ['env variable names are case-sensitive', '{"Env":["calico_ip=auto"]}', 'not ours'],
  // Type errors Go would meet in what the rewrite merges: refused before anything is reserved (found by the edge fuzz).
  ['NetworkingConfig of another type', '{"Env":["CALICO_IP=auto"],"NetworkingConfig":"x"}', 'refused 400'],
  ['an endpoint of another type', '{"Env":["CALICO_IP=auto"],"NetworkingConfig":{"EndpointsConfig":{"bridge":5}}}', 'refused 400'],
  ['Labels of another type', '{"Env":["CALICO_IP=auto"],"Labels":["x"]}', 'refused 400'],
  ['IPAMConfig of another type', '{"Env":["CALICO_IP=auto"],"NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":"x"}}}}', 'refused 400'],
];

for (const [name, body, want] of CASES) {
  test(`create body as Go reads it: ${name}`, () => assert.equal(decide(body), want));
}

test('goFold: ASCII case and the two runes that fold to ASCII letters', () => {
  assert.equal(goFold('hostConfig'), 'HOSTCONFIG');
  assert.equal(goFold('ho\u017ftconfig'), 'HOSTCONFIG');
  assert.equal(goFold('\u212aey'), 'KEY');
  assert.notEqual(goFold('\u00e9nv'), 'ENV');
});

test('parseGoJson: escapes, surrogates, controls, numbers, depth, first value only', () => {
  const s = (t: string) => {
    const v = parseGoJson(t).value;
    assert.equal(v.kind, 'string');
    return (v as { value: string }).value;
  };
  assert.equal(s('"a\\u0041\\n\\/"'), 'aA\n/');
  assert.equal(s('"\\ud83d\\ude00"'), '\u{1f600}');
  assert.equal(s('"\\ud83dx"'), '\ufffdx');
  assert.equal(s('"\\ude00"'), '\ufffd');
  assert.throws(() => parseGoJson('"a\nb"'), GoJsonError);
  assert.throws(() => parseGoJson('"\\a"'), GoJsonError);
  assert.equal(parseGoJson('-1.5e+3').value.kind, 'number');
  assert.equal(parseGoJson('1' + '0'.repeat(500)).end, 501);
  assert.throws(() => parseGoJson('-'), GoJsonError);
  assert.throws(() => parseGoJson('[[[1]]]', 2), /nested deeper than 2/);
  assert.equal(parseGoJson('{"a":1} trailing').end, 7);
  const o = parseGoJson(' {"a" : 1 , "a":2}').value;
  assert.equal(o.kind, 'object');
  if (o.kind === 'object') assert.deepEqual(o.members.map((m) => [m.key, ' {"a" : 1 , "a":2}'.slice(m.start, m.end)]), [['a', '"a" : 1'], ['a', '"a":2']]);
});

/** Every member of `obj` whose key folds to `field`. */
function folded(text: string, field: string): string[] {
  const v = parseGoJson(text).value;
  if (v.kind !== 'object') return [];
  return v.members.filter((m) => goFold(m.key) === goFold(field)).map((m) => text.slice(m.start, m.end));
}

test('rewrite: one canonical copy of what Calico owns, what Go merged in it; every other member as sent', () => {
  const body =
    '{"Image":"x","Image":null,"env":["CALICO_IP=auto"],"Cmd":["sh"],' +
    '"hostconfig":{"Binds":["/a:/b"],"NetworkMode":"proj"},"HostConfig":{"AutoRemove":true,"Memory":90071992547409930},' +
    '"labels":{"a":"1","' + HANDLE_LABEL + '":"forged"},"Labels":{"b":"2"},' +
    '"NetworkingConfig":{"EndpointsConfig":{"proj":{"Aliases":["old"]},"proj":{"Aliases":["web"],"IPAMConfig":{"IPv4Address":"1.2.3.4","LinkLocalIPs":["169.254.1.9"]}},"other":{}}}}';
  const view = readCreateBody(Buffer.from(body))!;
  assert.equal(view.networkMode, 'proj');
  const out = rewriteCreate(view, { handle: 'resv-1', ipv4: '10.0.0.5', profiles: ['web'] }).toString();
  // Members dockerd reads as before: byte for byte.
  assert.ok(out.includes('"Image":"x","Image":null,"env":["CALICO_IP=auto"],"Cmd":["sh"]'), out);
  assert.ok(out.includes('"Memory":90071992547409930'), out);
  for (const f of ['HostConfig', 'NetworkingConfig', 'Labels']) assert.equal(folded(out, f).length, 1, `${f} once in ${out}`);
  const o = JSON.parse(out) as Record<string, any>;
  assert.deepEqual(o.HostConfig, { Binds: ['/a:/b'], AutoRemove: true, Memory: 90071992547409930, NetworkMode: 'calico' });
  assert.deepEqual(o.Labels, { a: '1', b: '2', [HANDLE_LABEL]: 'resv-1', [PROFILES_LABEL]: 'web' });
  assert.deepEqual(o.NetworkingConfig, {
    EndpointsConfig: { other: {}, calico: { Aliases: ['web'], IPAMConfig: { LinkLocalIPs: ['169.254.1.9'], IPv4Address: '10.0.0.5' } } },
  });
  // Read back as dockerd will: on the calico network, same Env.
  const again = readCreateBody(Buffer.from(out))!;
  assert.equal(again.networkMode, 'calico');
  assert.deepEqual(again.env, ['CALICO_IP=auto']);
});

test('rewrite: a body without HostConfig, NetworkingConfig or Labels gets them; a null one is replaced', () => {
  const out = JSON.parse(rewriteCreate(readCreateBody(Buffer.from('{"Image":"i","Env":["CALICO_IP=auto"],"Labels":null}'))!, { handle: 'h', ipv6: 'fd00::1', profiles: [] }).toString());
  assert.deepEqual(out, {
    Image: 'i',
    Env: ['CALICO_IP=auto'],
    HostConfig: { NetworkMode: 'calico' },
    NetworkingConfig: { EndpointsConfig: { calico: { IPAMConfig: { IPv6Address: 'fd00::1' } } } },
    Labels: { [HANDLE_LABEL]: 'h' },
  });
});
