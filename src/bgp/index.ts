// BGP: the pure BIRD renderer, route ownership from the IPAM blocks, the BIRD supervisor, the birdc status parser.
export * from './types';
export * from './render';
export * from './paths';
export * from './bird';
export * from './status';
export * from './input';
export * from './component';
export * from './routes-owned';
export * from './block-watch';
