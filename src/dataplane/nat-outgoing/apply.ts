// The kernel side of NAT outgoing: feeds rendered text to ipset and
// iptables-restore (one call per tool and family), hooks the chain into
// POSTROUTING once, and removes everything on request.
import { spawn } from 'node:child_process';
import type { NatNames, NatRules } from './render';

export interface NatKernelOptions {
  names: NatNames;
  /** Run inside this network namespace (tests); default: the node's own. */
  netns?: string;
}

export interface ExecResult {
  code: number | null;
  stderr: string;
}

export class NatKernel {
  private readonly applied = new Map<string, string>();
  private hooked = new Set<4 | 6>();

  constructor(private readonly o: NatKernelOptions) {}

  /** Brings the kernel to `rules` for both families, skipping what is unchanged since the last call. */
  async apply(rules: NatRules): Promise<void> {
    for (const v of [4, 6] as const) {
      // A host whose pools never asked for NAT outgoing is left untouched:
      // no chain, no jump, no sets. Once touched, the rules are kept in step
      // (an empty chain when the last flag goes).
      if (!rules.active(v) && !this.applied.has(`ipt${v}`)) continue;
      const ipset = rules.ipset(v);
      if (this.applied.get(`ipset${v}`) !== ipset) {
        await this.must(`ipset${v}`, 'ipset', ['restore'], ipset);
        this.applied.set(`ipset${v}`, ipset);
      }
      const ipt = rules.iptables(v);
      if (this.applied.get(`ipt${v}`) !== ipt) {
        await this.must(`iptables${v}`, v === 4 ? 'iptables-restore' : 'ip6tables-restore', ['--noflush'], ipt);
        this.applied.set(`ipt${v}`, ipt);
      }
      if (!this.hooked.has(v)) {
        await this.hook(v);
        this.hooked.add(v);
      }
    }
  }

  /** Removes the jumps, the chains and the sets. Idempotent. */
  async remove(): Promise<void> {
    const { chain } = this.o.names;
    for (const v of [4, 6] as const) {
      const ipt = v === 4 ? 'iptables' : 'ip6tables';
      while ((await this.exec(ipt, ['-w', '-t', 'nat', '-D', 'POSTROUTING', '-j', chain])).code === 0) {
        /* remove every copy */
      }
      await this.exec(ipt, ['-w', '-t', 'nat', '-F', chain]);
      await this.exec(ipt, ['-w', '-t', 'nat', '-X', chain]);
      for (const s of [this.o.names.masqSet(v), this.o.names.poolSet(v)]) {
        await this.exec('ipset', ['destroy', s]);
        await this.exec('ipset', ['destroy', `${s}-tmp`]);
      }
    }
    this.applied.clear();
    this.hooked.clear();
  }

  private async hook(v: 4 | 6): Promise<void> {
    const ipt = v === 4 ? 'iptables' : 'ip6tables';
    const check = await this.exec(ipt, ['-w', '-t', 'nat', '-C', 'POSTROUTING', '-j', this.o.names.chain]);
    if (check.code === 0) return;
    // First in POSTROUTING: Docker's own MASQUERADE rules must not claim pool traffic first.
    await this.must(`hooking ${this.o.names.chain} into POSTROUTING (IPv${v})`, ipt, ['-w', '-t', 'nat', '-I', 'POSTROUTING', '1', '-j', this.o.names.chain]);
  }

  private async must(what: string, cmd: string, args: string[], input?: string): Promise<void> {
    const r = await this.exec(cmd, args, input);
    if (r.code !== 0) throw new Error(`NAT outgoing: ${what}: ${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  }

  private exec(cmd: string, args: string[], input?: string): Promise<ExecResult> {
    const [file, argv] = this.o.netns ? ['ip', ['netns', 'exec', this.o.netns, cmd, ...args]] : [cmd, args];
    return new Promise((resolve) => {
      const child = spawn(file, argv, { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      child.on('error', (e) => resolve({ code: -1, stderr: e.message }));
      child.on('close', (code) => resolve({ code, stderr }));
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(input ?? '');
    });
  }
}
