// The node's status file: `calicoctl status` is another process, so the node
// writes what its components report (Component.status) to
// <stateDir>/node-status.json every couple of seconds and once more at stop.
// Written to a temporary name and renamed, so a reader never sees half a file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Component } from '../lifecycle/component';
import type { NodeHealth } from '../metrics/health';
import { nodeHealth } from './health';

export const STATUS_FILE_NAME = 'node-status.json';
const DEFAULT_INTERVAL_MS = 2000;

export interface NodeStatusFile {
  pid: number;
  /** The node's host name in the datastore (`calicoctl node --hostname`): the CLI's default host on this machine. */
  host?: string;
  /**
   * The machine's hostname when the node wrote this (os.hostname()): \`host\`
   * is this machine's default only while that still matches, so a process in
   * another UTS namespace (a lab host sharing the filesystem) or a file
   * copied from another machine does not lend its name.
   */
  machine?: string;
  /** Epoch ms of this write. */
  writtenAt: number;
  /** false in the last write, made when the node stopped. */
  running: boolean;
  /** Component name -> what its status() said. */
  components: Record<string, Record<string, unknown>>;
  /** The same facts /healthz serves: every component up, or which is not and why. */
  health?: NodeHealth;
}

export function statusFilePath(stateDir: string): string {
  return path.join(stateDir, STATUS_FILE_NAME);
}

/** Reads the node's status file; undefined when there is none or it does not parse. */
export function readStatusFile(stateDir: string): NodeStatusFile | undefined {
  try {
    return JSON.parse(fs.readFileSync(statusFilePath(stateDir), 'utf8')) as NodeStatusFile;
  } catch {
    return undefined;
  }
}

export interface StatusFileOptions {
  stateDir: string;
  /** This node's host name, written for the CLI's commands run on this machine. */
  host?: string;
  /** The components to ask, at each write (the node's running list). */
  components: () => readonly Component[];
  intervalMs?: number;
  log: Logger;
}

export class StatusFile implements Component {
  readonly name = 'status-file';
  private timer?: NodeJS.Timeout;

  constructor(private readonly o: StatusFileOptions) {}

  async start(): Promise<void> {
    this.write(true);
    this.timer = setInterval(() => this.write(true), this.o.intervalMs ?? DEFAULT_INTERVAL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.write(false);
  }

  private write(running: boolean): void {
    const components: NodeStatusFile['components'] = {};
    for (const c of this.o.components()) {
      if (!c.status || c === this) continue;
      try {
        components[c.name] = c.status();
      } catch (e) {
        components[c.name] = { statusError: (e as Error).message };
      }
    }
    const body: NodeStatusFile = { pid: process.pid, ...(this.o.host ? { host: this.o.host } : {}), machine: os.hostname(), writtenAt: Date.now(), running, components, health: nodeHealth(this.o.components()) };
    const file = statusFilePath(this.o.stateDir);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(body) + '\n');
      fs.renameSync(tmp, file);
    } catch (e) {
      this.o.log.warn({ err: (e as Error).message, file }, 'could not write the node status file');
    }
  }
}
