// Runs kernel tools (iptables-save, iptables-restore, ipset, conntrack...),
// in the node's network namespace or, for tests, inside a named one.
//
// Starting a process from the node costs a fork of the node itself (libuv
// forks, then execs): with the node's heap that is several milliseconds of
// the event loop per tool, and an endpoint's Join used to start five or six
// (ipset, iptables-restore, ip6tables-restore, conntrack per address and
// direction). `many` starts several tools side by side from one process
// start: a bash (dash takes single-digit descriptors only) that runs each
// with its own input, output and error pipes, and reports each one's exit
// status.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ToolCall {
  cmd: string;
  args: string[];
  input?: string;
}

export interface ToolRunner {
  (cmd: string, args: string[], input?: string): Promise<ToolResult>;
  /** Several tools side by side from one process start; their results in the same order. */
  many(calls: ToolCall[]): Promise<ToolResult[]>;
}

/** A word for `sh`, quoted whatever it holds. */
export function shellWord(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The script `many` runs: call i reads fd 3+i, writes its output to fd
 * 3+n+i and its errors to fd 3+2n+i, and its exit status goes to stdout as
 * "i status". Pure, for the unit test.
 */
export function manyScript(calls: readonly { cmd: string; args: string[] }[], netns?: string): string {
  const n = calls.length;
  const lines = calls.map((c, i) => {
    const argv = [...(netns ? ['ip', 'netns', 'exec', netns] : []), c.cmd, ...c.args].map(shellWord).join(' ');
    return `( ${argv} <&${3 + i} >&${3 + n + i} 2>&${3 + 2 * n + i}; echo "${i} $?" ) &`;
  });
  return [...lines, 'wait', ''].join('\n');
}

/** Tools started by one shell in `many` (three pipes each, well under the usual 1024 descriptors). */
export const MANY_AT_ONCE = 32;

export function toolRunner(o: { netns?: string; timeoutMs?: number }): ToolRunner {
  const timeoutMs = o.timeoutMs ?? 30000;
  const one = (cmd: string, args: string[], input?: string): Promise<ToolResult> => {
    const [file, argv] = o.netns ? ['ip', ['netns', 'exec', o.netns, cmd, ...args]] : [cmd, args];
    return new Promise((resolve) => {
      const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout!.on('data', (b: Buffer) => out.push(b));
      child.stderr!.on('data', (b: Buffer) => err.push(b));
      // A wedged tool (a stuck xtables lock holder) must not stall every later apply.
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve({ code: -1, stdout: '', stderr: `cannot run ${cmd}: ${e.message}` });
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const stderr = Buffer.concat(err).toString() + (signal ? `\nkilled by ${signal} after ${timeoutMs} ms` : '');
        resolve({ code, stdout: Buffer.concat(out).toString(), stderr });
      });
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input ?? '');
    });
  };
  const many = async (calls: ToolCall[]): Promise<ToolResult[]> => {
    // Three descriptors per tool: at most MANY_AT_ONCE tools per shell, the shells one after another.
    const out: ToolResult[] = [];
    for (let i = 0; i < calls.length; i += MANY_AT_ONCE) out.push(...(await batch(calls.slice(i, i + MANY_AT_ONCE))));
    return out;
  };
  const batch = (calls: ToolCall[]): Promise<ToolResult[]> => {
    if (calls.length <= 1) return Promise.all(calls.map((c) => one(c.cmd, c.args, c.input)));
    const n = calls.length;
    return new Promise((resolve) => {
      // Its own process group, so that a timeout kills the tools with the shell.
      const stdio: StdioOptions = ['ignore', 'pipe', 'pipe', ...calls.flatMap(() => ['pipe', 'pipe', 'pipe'] as const)];
      const child: ChildProcess = spawn('bash', ['-c', manyScript(calls, o.netns)], { stdio, detached: true });
      const bufs = Array.from({ length: 2 + 2 * n }, () => [] as Buffer[]);
      const read = (fd: number, into: Buffer[]) => (child.stdio[fd] as NodeJS.ReadableStream | null)?.on('data', (b: Buffer) => into.push(b));
      read(1, bufs[0]!);
      read(2, bufs[1]!);
      for (let i = 0; i < n; i++) {
        read(3 + n + i, bufs[2 + i]!);
        read(3 + 2 * n + i, bufs[2 + n + i]!);
        const input = child.stdio[3 + i] as NodeJS.WritableStream | null;
        input?.on('error', () => undefined);
        input?.end(calls[i]!.input ?? '');
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve(calls.map((c) => ({ code: -1, stdout: '', stderr: `cannot run ${c.cmd}: ${e.message}` })));
      });
      child.on('close', (_code, signal) => {
        clearTimeout(timer);
        const codes = new Map<number, number>();
        for (const line of Buffer.concat(bufs[0]!).toString().split('\n')) {
          const m = /^(\d+) (\d+)$/.exec(line);
          if (m) codes.set(Number(m[1]), Number(m[2]));
        }
        const shellErr = Buffer.concat(bufs[1]!).toString();
        resolve(
          calls.map((c, i) => {
            const code = codes.get(i);
            const stderr = Buffer.concat(bufs[2 + n + i]!).toString();
            // No status: the shell or the tool was killed (timeout) or could not start.
            if (code === undefined) return { code: null, stdout: '', stderr: `${stderr}${shellErr}${signal ? `\nkilled by ${signal} after ${timeoutMs} ms` : `\n${c.cmd} did not report an exit status`}` };
            return { code, stdout: Buffer.concat(bufs[2 + i]!).toString(), stderr };
          }),
        );
      });
    });
  };
  return Object.assign(one, { many });
}
