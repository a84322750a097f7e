// Runs one kernel tool (iptables-save, iptables-restore, ipset...), in the
// node's network namespace or, for tests, inside a named one.
import { spawn } from 'node:child_process';

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ToolRunner {
  (cmd: string, args: string[], input?: string): Promise<ToolResult>;
}

export function toolRunner(o: { netns?: string; timeoutMs?: number }): ToolRunner {
  const timeoutMs = o.timeoutMs ?? 30000;
  return (cmd, args, input) => {
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
}
