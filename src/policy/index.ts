export { compilePolicy, programmedEndpoints, tagMembers, DEFAULT_NO_MATCH_MARK, DEFAULT_RECHECK_MARK } from './compile';
export type { PolicyInput, PolicyOptions } from './compile';
export { portChunks, ruleMatches, ruleSkip, MULTIPORT_MAX } from './rules';
