// Follows dockerd's container events for as long as it runs, resubscribing
// with backoff when dockerd goes away (restart, upgrade), and telling the
// caller each time it (re)connects: events missed while away are made up by
// a sweep.
import type Dockerode from 'dockerode';
import type { Logger } from 'pino';

export interface ContainerEvent {
  /** start, die, destroy, ... */
  action: string;
  id: string;
  /** Labels and name, as dockerd attaches them to the event. */
  attributes: Record<string, string>;
}

export interface EventFollowerOptions {
  docker: Dockerode;
  log: Logger;
  actions: string[];
  onEvent(e: ContainerEvent): void;
  /** Called after each successful (re)subscription. */
  onConnected(): void;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Parses one line of dockerd's /events stream; undefined for what is not a container event. */
export function parseEventLine(line: string): ContainerEvent | undefined {
  if (!line.trim()) return undefined;
  let raw: { Type?: string; Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> } };
  try {
    raw = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (raw.Type !== undefined && raw.Type !== 'container') return undefined;
  const action = (raw.Action ?? raw.status ?? '').split(':')[0];
  const id = raw.Actor?.ID ?? raw.id;
  if (!action || !id) return undefined;
  return { action, id, attributes: raw.Actor?.Attributes ?? {} };
}

export class EventFollower {
  private stopped = false;
  private stream?: NodeJS.ReadableStream & { destroy?: () => void };
  private timer?: NodeJS.Timeout;
  private backoff: number;

  constructor(private readonly o: EventFollowerOptions) {
    this.backoff = o.initialBackoffMs ?? 500;
  }

  start(): void {
    this.stopped = false;
    void this.subscribe();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.stream?.destroy?.();
    this.stream = undefined;
  }

  private async subscribe(): Promise<void> {
    if (this.stopped) return;
    try {
      const filters = JSON.stringify({ type: ['container'], event: this.o.actions });
      const stream = (await this.o.docker.getEvents({ filters })) as NodeJS.ReadableStream & { destroy?: () => void };
      if (this.stopped) {
        stream.destroy?.();
        return;
      }
      this.stream = stream;
      this.backoff = this.o.initialBackoffMs ?? 500;
      this.o.log.debug('following docker events');
      let buf = '';
      stream.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const e = parseEventLine(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (e) this.o.onEvent(e);
        }
      });
      let ended = false;
      const onEnd = (why: string) => {
        if (ended) return;
        ended = true;
        if (!this.stopped) {
          this.o.log.warn(`docker event stream ${why}; resubscribing`);
          this.retry();
        }
      };
      stream.on('end', () => onEnd('ended'));
      stream.on('close', () => onEnd('closed'));
      stream.on('error', (e: Error) => onEnd(`failed: ${e.message}`));
      this.o.onConnected();
    } catch (e) {
      this.o.log.debug({ err: e }, 'docker events unavailable; retrying');
      this.retry();
    }
  }

  private retry(): void {
    if (this.stopped) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.o.maxBackoffMs ?? 5000);
    this.timer = setTimeout(() => void this.subscribe(), wait);
  }
}
