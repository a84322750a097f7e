import type { Logger } from 'pino';
import { Datastore, LayoutStore, LAYOUT_VERSION } from '../datastore';
import type { Component } from '../lifecycle/component';

/**
 * Right after the datastore: writes the layout version on a fresh datastore
 * and refuses to start on one newer than this code knows, before any other
 * component reads or writes a key.
 */
export class LayoutVersionCheck implements Component {
  readonly name = 'layout-version';
  private version?: number;

  constructor(private readonly ds: () => Datastore, private readonly log: Logger) {}

  async start(): Promise<void> {
    const verdict = await new LayoutStore(this.ds()).ensure(LAYOUT_VERSION);
    if (verdict.action === 'refuse') throw new Error(verdict.message);
    this.version = verdict.version;
    if (verdict.action === 'write') this.log.info({ layoutVersion: verdict.version }, `new datastore: recorded layout version ${verdict.version}`);
  }

  async stop(): Promise<void> {}

  status(): Record<string, unknown> {
    return { layoutVersion: this.version };
  }
}
