import { aggregateHealth, NodeHealth } from '../metrics/health';
import type { Component } from '../lifecycle/component';

/**
 * The node's health from its running components (NodeProcess.components()):
 * what /healthz answers and what a status file records. Never waits: each
 * component answers from what it already knows.
 */
export function nodeHealth(components: readonly Component[]): NodeHealth {
  return aggregateHealth(components);
}
