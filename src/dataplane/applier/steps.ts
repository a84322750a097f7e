// The applier's steps as tools (pure): which tool a step runs with what
// input, which steps may run side by side, how a step is named in a log
// line, and the error a failed step raises, naming what failed on what.
import type { ToolCall, ToolResult } from './exec';
import type { Step } from './plan';
import type { IpFamily } from './types';

/** A failed kernel call: which tool, on which family and table, and the input line the kernel refused. */
export class ApplierError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly stderr: string,
    readonly family?: IpFamily,
    readonly table?: string,
    readonly line?: string,
  ) {
    super(message);
    this.name = 'ApplierError';
  }
}

/** The error for a restore the kernel refused, naming the input line it gave (and that line's table). */
export function refused(command: string, step: Step, stderr: string, code: number | null): ApplierError {
  const text = step.kind === 'ipset-destroy' ? '' : step.text;
  const lines = text.split('\n');
  const m = /line:?\s+(\d+)/i.exec(stderr);
  const n = m ? Number(m[1]) : undefined;
  const line = n !== undefined ? lines[n - 1] : undefined;
  let table: string | undefined;
  if (n !== undefined && step.kind === 'iptables') {
    for (let i = n - 1; i >= 0 && !table; i--) if (lines[i]?.startsWith('*')) table = lines[i].slice(1);
  }
  const family = step.kind === 'iptables' ? step.family : undefined;
  const where = [family ? `IPv${family}` : '', table ? `table ${table}` : ''].filter(Boolean).join(' ');
  const msg = `${command}${where ? ` (${where})` : ''} exited ${code}${line !== undefined ? ` at line ${n} "${line}"` : ''}: ${stderr.trim().split('\n').filter(Boolean).join(' / ')}`;
  return new ApplierError(msg, command, stderr, family, table, line);
}

/** The tool a step runs, with its input. */
export function toolCall(step: Step): ToolCall {
  if (step.kind === 'ipset-destroy') return { cmd: 'ipset', args: ['destroy', step.name] };
  if (step.kind === 'ipset-restore') return { cmd: 'ipset', args: ['restore'], input: step.text };
  return { cmd: step.family === 4 ? 'iptables-restore' : 'ip6tables-restore', args: ['--noflush', '-w'], input: step.text };
}

/** Throws the step's error when its tool failed. */
export function checkResult(step: Step, r: ToolResult, via?: string): void {
  if (r.code === 0) return;
  const call = toolCall(step);
  throw refused(via ?? `${call.cmd} ${call.args.join(' ')}`, step, r.stderr, r.code);
}

/** Throws unless every set is gone: one that already was is what a destroy wanted (idempotent). */
export function checkDestroyed(names: string[], r: ToolResult): void {
  if (r.code === 0) return;
  const errors = r.stderr.split('\n').filter((l) => l.trim() && !/does not exist/.test(l));
  if (!errors.length && r.code === 1) return;
  const command = `ipset destroy ${names.join(', ')} (the applier's ipset session)`;
  throw new ApplierError(`${command} failed: ${r.stderr.trim()}`, command, r.stderr);
}

export function isProgram(s: Step | undefined): s is Extract<Step, { kind: 'iptables' }> {
  return s?.kind === 'iptables' && s.purpose === 'program';
}

/** An ipset restore that only adds or deletes members (no set created, swapped or destroyed). */
export function membersOnly(text: string): boolean {
  return text.split('\n').every((l) => l === '' || l.startsWith('add ') || l.startsWith('del '));
}

export function describe(s: Step): string {
  if (s.kind === 'ipset-destroy') return `ipset destroy ${s.name}`;
  const n = s.text.split('\n').length - 1;
  return s.kind === 'ipset-restore' ? `ipset restore (${n} lines)` : `ip${s.family === 6 ? '6' : ''}tables-restore ${s.purpose} (${n} lines)`;
}
