/**
 * The class of a Docker API request, from its path alone: a bounded label
 * set for the proxy's request counter (never the path itself, which carries
 * container ids, nor the query). Pure.
 */
export const PATH_CLASSES = ['containers', 'images', 'exec', 'networks', 'volumes', 'build', 'system', 'swarm', 'plugins', 'distribution', 'session', 'other'] as const;
export type PathClass = (typeof PATH_CLASSES)[number];

const BY_FIRST_SEGMENT = new Map<string, PathClass>(Object.entries({
  containers: 'containers',
  images: 'images',
  commit: 'images',
  exec: 'exec',
  networks: 'networks',
  volumes: 'volumes',
  build: 'build',
  _ping: 'system',
  version: 'system',
  info: 'system',
  events: 'system',
  system: 'system',
  auth: 'system',
  swarm: 'swarm',
  nodes: 'swarm',
  services: 'swarm',
  tasks: 'swarm',
  secrets: 'swarm',
  configs: 'swarm',
  plugins: 'plugins',
  distribution: 'distribution',
  session: 'session',
  grpc: 'session',
} satisfies Record<string, PathClass>));

/** `/v1.41/containers/abc/json?x=1` -> containers; `/_ping` -> system; anything unknown -> other. */
export function pathClass(url: string): PathClass {
  // The first segment after an optional /vX.Y prefix, without allocating the split path.
  let i = url.charCodeAt(0) === 47 /* / */ ? 1 : 0;
  let end = segmentEnd(url, i);
  if (url.charCodeAt(i) === 118 /* v */ && /^v\d+(\.\d+)?$/.test(url.slice(i, end))) {
    i = end + 1;
    end = segmentEnd(url, i);
  }
  return BY_FIRST_SEGMENT.get(url.slice(i, end)) ?? 'other';
}

function segmentEnd(url: string, from: number): number {
  for (let j = from; j < url.length; j++) {
    const c = url.charCodeAt(j);
    if (c === 47 /* / */ || c === 63 /* ? */ || c === 35 /* # */) return j;
  }
  return url.length;
}
