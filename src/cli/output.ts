import Table from 'cli-table3';
import type { Command } from 'commander';
import { UsageError } from './errors';

export type Align = 'left' | 'center' | 'right';

export interface Column {
  header: string;
  align?: Align; // cells; headers are always centred, as PrettyTable printed them
}

// PrettyTable's default frame: +---+ borders, a rule under the header and at
// the bottom, no rule between rows (multi-line cells stay readable).
const CHARS = {
  top: '-', 'top-mid': '+', 'top-left': '+', 'top-right': '+',
  bottom: '-', 'bottom-mid': '+', 'bottom-left': '+', 'bottom-right': '+',
  left: '|', 'left-mid': '', mid: '', 'mid-mid': '', right: '|', 'right-mid': '', middle: '|',
};

/** Renders a table the way calicoctl printed them in 2015 (PrettyTable defaults). Ends with a newline. */
export function renderTable(columns: Column[], rows: (string | number)[][]): string {
  const t = new Table({
    // cli-table3 accepts cell objects in head at run time; its typings say string[].
    head: columns.map((c) => ({ content: c.header, hAlign: 'center' })) as unknown as string[],
    chars: CHARS,
    colAligns: columns.map((c) => c.align ?? 'left'),
    style: { head: [], border: [], 'padding-left': 1, 'padding-right': 1, compact: true },
  });
  for (const r of rows) t.push(r.map((v) => String(v)));
  const lines = t.toString().split('\n');
  const headerHeight = Math.max(1, ...columns.map((c) => c.header.split('\n').length));
  // compact drops every inner rule; put back the one under the header.
  lines.splice(1 + headerHeight, 0, lines[0]!);
  return lines.join('\n') + '\n';
}

export type OutputFormat = 'table' | 'json';

/** Adds `-o, --output <table|json>` to a listing command. */
export function addOutputOption(cmd: Command): Command {
  return cmd.option('-o, --output <format>', 'output format: table or json (for scripts)', 'table');
}

export function outputFormat(value: unknown): OutputFormat {
  if (value === undefined || value === 'table') return 'table';
  if (value === 'json') return 'json';
  throw new UsageError(`Invalid --output "${String(value)}": expected table or json.`);
}

/** JSON for scripts: stable, indented, one document per command, newline-terminated. */
export function renderJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/**
 * A listing: JSON (the records as they are) or a table built from them.
 * `emptyText` replaces an empty table, as 2015 printed "No IPv4 BGP Peers defined."
 */
export function printListing<T>(
  format: OutputFormat,
  records: T[],
  table: { columns: Column[]; row: (r: T) => (string | number)[]; emptyText?: string },
  out: NodeJS.WritableStream = process.stdout,
): void {
  if (format === 'json') {
    out.write(renderJson(records));
    return;
  }
  if (records.length === 0 && table.emptyText !== undefined) {
    out.write(table.emptyText.endsWith('\n') ? table.emptyText : table.emptyText + '\n');
    return;
  }
  out.write(renderTable(table.columns, records.map(table.row)));
}

