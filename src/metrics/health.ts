/**
 * What /healthz answers: every component's word, "ok" or why not. Pure.
 * `nodeHealth` in src/node/health.ts asks the running components; the
 * status file writer uses the same function.
 */
export interface NodeHealth {
  status: 'ok' | 'unhealthy';
  components: Record<string, string>;
}

/** Something that may say why it is not up (undefined: up). */
export interface HealthSource {
  readonly name: string;
  health?(): string | undefined;
}

export function aggregateHealth(sources: readonly HealthSource[]): NodeHealth {
  const components: Record<string, string> = {};
  let ok = true;
  for (const s of sources) {
    let why: string | undefined;
    try {
      why = s.health?.();
    } catch (e) {
      why = `health check failed: ${(e as Error).message}`;
    }
    if (why !== undefined) ok = false;
    components[s.name] = why ?? 'ok';
  }
  return { status: ok ? 'ok' : 'unhealthy', components };
}
