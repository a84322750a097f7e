export * from './node-metrics';
export * from './path-class';
export * from './health';
export * from './listen';
export { MetricsServer, MetricsServerOptions } from './server';
