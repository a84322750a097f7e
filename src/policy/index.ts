export { PolicyCompiler } from './compiler';
export { compilePolicy, programmedEndpoints, tagMembers, toHostRules, DEFAULT_NO_MATCH_MARK, DEFAULT_RECHECK_MARK, DEFAULT_TO_HOST_MARK, ENDPOINT_TO_HOST_ACTIONS } from './compile';
export type { EndpointToHostAction, PolicyInput, PolicyOptions } from './compile';
export { portChunks, ruleMatches, ruleSkip, MULTIPORT_MAX } from './rules';
