// The Docker API proxy: what the node and the interceptors need from it.
export { DockerProxy } from './proxy';
export type { ProxyOptions } from './proxy';
export * from './interceptor';
