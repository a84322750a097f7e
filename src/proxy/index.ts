// The Docker API proxy: what the node and the interceptors need from it.
export { DockerProxy } from './proxy';
export type { ProxyOptions } from './proxy';
export type { TlsOptions } from './listener';
export { ListenError, checkListenPolicy } from './listener';
export { parseAddress, formatAddress, AddressError } from './address';
export type { Address } from './address';
export * from './interceptor';
