// Docs that cannot drift from the CLI: every `calicoctl ...` command line in
// README.md and docs/*.md (code blocks and inline code) must be accepted by
// calicoctl's own command tree — parsed by commander, actions replaced, so
// nothing runs. Rule specs in `profile P rule add|remove` lines are parsed too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { program } from './cli-run';
import { parseRuleSpec } from '../../src/cli/commands/profile-spec';

const ROOT = path.join(__dirname, '..', '..', '..');

export interface DocLine {
  line: string;
  /** Inline code in prose: usage notation allowed ([optional], a|b, (x|y)), and arguments may be left out. */
  inline: boolean;
}

/** The calicoctl command lines of a markdown text (prompts, comments, redirections and pipes cut off). */
export function calicoctlLines(md: string): DocLine[] {
  const lines: DocLine[] = [];
  let fenced = false;
  // A block with prompts ("$ calicoctl ...", "trinity10$ ...") shows output too: only its prompted lines are commands.
  let prompted = false;
  const raw = md.split('\n');
  const PROMPT = /^\s*[\w.@-]*[$#]\s+(?:sudo\s+)?calicoctl\s/;
  for (let i = 0; i < raw.length; i++) {
    let line = raw[i]!;
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      if (fenced) {
        const end = raw.findIndex((l, j) => j > i && /^\s*```/.test(l));
        prompted = raw.slice(i + 1, end < 0 ? undefined : end).some((l) => PROMPT.test(l));
      }
      continue;
    }
    if (fenced) {
      while (line.endsWith('\\') && i + 1 < raw.length) line = line.slice(0, -1) + ' ' + raw[++i]!.trim();
      if (prompted && !PROMPT.test(line)) continue;
      const m = /^\s*(?:[\w.@-]*[$#]\s+)?(?:sudo\s+)?(calicoctl\s.*)$/.exec(line);
      // A usage line (`pool add <CIDR> [--ipip]`) is read as prose's notation.
      const usage = m && /\[|<[A-Za-z]/.test(m[1]!);
      if (m) lines.push(usage ? { line: cut(notation(m[1]!)), inline: true } : { line: cut(m[1]!), inline: false });
    } else {
      for (const span of line.matchAll(/`(calicoctl\s[^`]*)`/g)) lines.push({ line: cut(notation(span[1]!)), inline: true });
    }
  }
  return lines.filter((l) => l.line.length > 0);
}

/** Usage notation to one command line: `[--force]` -> `--force`, `add\|remove` -> `add`, `(inbound|outbound)` -> `inbound`. */
function notation(span: string): string {
  return span
    .replace(/\\\|/g, '|')
    .replace(/[[\]()]/g, ' ')
    .split(/\s+/)
    .map((w) => (w.includes('|') && !w.startsWith('|') ? w.split('|')[0]! : w))
    .join(' ');
}

function cut(line: string): string {
  return line
    .replace(/\s+/g, ' ')
    .replace(/\s+(#|<(?=\s)|>|\||&&|;|2>).*$/, '')
    .replace(/…/g, ' ...')
    .replace(/(\s*\.\.\.)+\s*$/, '')
    .trim();
}

/** Shell words (single and double quotes). */
export function words(line: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (const m of line.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** calicoctl's tree with every action replaced: parsing checks commands, arguments and flags, and runs nothing. */
function parseOnly(): Command {
  const p = program();
  const seen: string[][] = [];
  const walk = (c: Command) => {
    c.exitOverride();
    c.configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
    if ((c as unknown as { _actionHandler?: unknown })._actionHandler) c.action((...args: unknown[]) => void seen.push(args as string[]));
    for (const s of c.commands) walk(s);
  };
  walk(p);
  return p;
}

/**
 * Commands the docs describe that another change registers (endpoint show,
 * policy trace): skipped only while no such command is registered, checked
 * like every other line once it is.
 */
const PENDING = ['endpoint', 'policy'];

/** What prose may leave out of an inline mention: the arguments. */
const INLINE_OK = ['commander.missingArgument', 'commander.optionMissingArgument', 'commander.missingMandatoryOptionValue'];

/** The old spellings (hidden aliases, "old spelling of ...") of every command. */
function hiddenFlags(tree: Command): string[] {
  const out: string[] = [];
  const walk = (c: Command) => {
    for (const o of c.options) if (o.hidden && o.long && o.description.startsWith('old spelling')) out.push(o.long);
    c.commands.forEach(walk);
  };
  walk(tree);
  return out;
}

/** Undefined when calicoctl accepts the line; else why not. */
function refusal(line: string, inline = false): string | undefined {
  const args = words(line).slice(1);
  if (args.includes('--help') || args.includes('-h') || args.includes('--version')) return undefined;
  const tree = parseOnly();
  const first = args.find((a) => !a.startsWith('-'));
  if (first && PENDING.includes(first) && !tree.commands.some((c) => c.name() === first)) return undefined;
  // Old spellings parse (hidden aliases) but the docs use the current ones.
  const hidden = hiddenFlags(tree).filter((f) => args.some((a) => a === f || a.startsWith(`${f}=`)));
  if (hidden.length) return `old spelling ${hidden.join(', ')}: the docs use the current flag`;
  try {
    tree.parse(args, { from: 'user' });
  } catch (e) {
    if (inline && INLINE_OK.includes((e as { code?: string }).code ?? '')) return undefined;
    return (e as Error).message;
  }
  // profile's words are dispatched by calicoctl, not commander: check rule specs.
  const operands = args.filter((a) => !a.startsWith('-'));
  const pi = operands.indexOf('profile');
  if (pi >= 0 && operands[pi + 2] === 'rule' && (operands[pi + 3] === 'add' || operands[pi + 3] === 'remove') && operands.length > pi + 5) {
    try {
      parseRuleSpec(operands.slice(pi + 5));
    } catch (e) {
      return (e as Error).message;
    }
  }
  return undefined;
}

test('docs: every calicoctl command line in README.md and docs/*.md parses', () => {
  const files = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  let checked = 0;
  const bad: string[] = [];
  for (const f of files) {
    for (const { line, inline } of calicoctlLines(fs.readFileSync(path.join(ROOT, f), 'utf8'))) {
      checked++;
      const why = refusal(line, inline);
      if (why) bad.push(`${f}: ${line}\n    ${why.split('\n')[0]}`);
    }
  }
  assert.ok(checked > 50, `found ${checked} command lines`);
  assert.deepEqual(bad, [], `command lines calicoctl refuses:\n${bad.join('\n')}`);
});

test('docs: the extractor and the check can fail', () => {
  assert.deepEqual(calicoctlLines('run `calicoctl pool add 10.0.0.0/16` or `calicoctl node stop [--force]`, `calicoctl pool add\\|remove` then\n```\n$ calicoctl node --ip=10.0.0.1 \\\n  --detach   # bg\n```\n'), [
    { line: 'calicoctl pool add 10.0.0.0/16', inline: true },
    { line: 'calicoctl node stop --force', inline: true },
    { line: 'calicoctl pool add', inline: true },
    { line: 'calicoctl node --ip=10.0.0.1 --detach', inline: false },
  ]);
  assert.equal(refusal('calicoctl pool add', true), undefined, 'prose may leave the arguments out');
  assert.match(refusal('calicoctl pool add') ?? '', /missing required argument/, 'a code block may not');
  assert.match(refusal('calicoctl pool add --nat-outgoin 10.0.0.0/16') ?? '', /unknown option/);
  assert.match(refusal('calicoctl pool ad 10.0.0.0/16') ?? '', /unknown command/);
  assert.match(refusal('calicoctl profile WEB rule add inbound allow tcp to port 80') ?? '', /Invalid rule/);
  assert.equal(refusal('calicoctl profile WEB rule add inbound allow tcp to ports 80'), undefined);
  assert.match(refusal('calicoctl node --name trinity10') ?? '', /old spelling --name/);
  assert.match(refusal('calicoctl node --docker-upstream=unix:///x.sock') ?? '', /old spelling --docker-upstream/);
});
