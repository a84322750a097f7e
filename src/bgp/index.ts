// BGP: the pure BIRD renderer, the BIRD supervisor, the birdc status parser.
export * from './types';
export * from './render';
export * from './paths';
export * from './bird';
export * from './status';
export * from './input';
export * from './component';
