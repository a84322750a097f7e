import Dockerode from 'dockerode';

/** A Docker client for unix:///path, /path or tcp://host[:port] (2375 when absent): the real dockerd, never the proxy. */
export function dockerClient(upstream: string): Dockerode {
  if (upstream.startsWith('unix://')) return new Dockerode({ socketPath: upstream.slice('unix://'.length) });
  if (upstream.startsWith('/')) return new Dockerode({ socketPath: upstream });
  const m = /^(?:tcp|http):\/\/\[?([^\]/]+?)\]?(?::(\d+))?\/?$/.exec(upstream);
  if (!m) throw new Error(`cannot reach Docker at "${upstream}": expected unix:///path or tcp://host:port`);
  return new Dockerode({ host: m[1], port: Number(m[2] ?? 2375), protocol: 'http' });
}
