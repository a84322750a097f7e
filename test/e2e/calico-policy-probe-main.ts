// A TCP probe for the policy tests, run inside a namespace (the LAN's):
//   connect <host> <port> open|closed   tries a fresh connection every 20 ms
//       (each with a 100 ms connect timeout) and exits when the outcome is the
//       wanted one, printing {"at": <epoch ms>, "tries": n}.
//   stream <host> <port> <ms> [silentMs]  holds one connection to an echo
//       server, sends a line every 20 ms, and after <ms> (or once nothing came
//       back for silentMs) prints {"echoes", "maxGapMs", "lastEchoAt",
//       "closed", "error"}.
// Prints "READY" when it starts probing.
import net from 'node:net';

function attempt(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function connect(host: string, port: number, want: 'open' | 'closed'): Promise<void> {
  process.stdout.write('READY\n');
  for (let tries = 1; ; tries++) {
    const open = await attempt(host, port, 100);
    if (open === (want === 'open')) {
      process.stdout.write(JSON.stringify({ at: Date.now(), tries }) + '\n');
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function stream(host: string, port: number, ms: number, silentMs: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let echoes = 0;
    let last = 0;
    let maxGap = 0;
    let closed = false;
    let error: string | undefined;
    let tick: NodeJS.Timeout | undefined;
    let over = false;
    const finish = () => {
      if (over) return;
      over = true;
      if (tick) clearInterval(tick);
      clearTimeout(end);
      s.destroy();
      process.stdout.write(JSON.stringify({ echoes, maxGapMs: maxGap, lastEchoAt: last, closed, error }) + '\n');
      resolve();
    };
    const end = setTimeout(finish, ms);
    s.once('connect', () => {
      last = Date.now();
      process.stdout.write('READY\n');
      tick = setInterval(() => {
        if (!over) s.write('x\n');
        const gap = Date.now() - last;
        if (silentMs && gap >= silentMs) finish();
      }, 20);
    });
    s.on('data', () => {
      const now = Date.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      echoes++;
    });
    s.once('close', () => {
      closed = true;
      finish();
    });
    s.once('error', (e) => (error = e.message));
  });
}

const [mode, host, port, a, b] = process.argv.slice(2);
const done = mode === 'connect' ? connect(host!, Number(port), a as 'open' | 'closed') : stream(host!, Number(port), Number(a), Number(b ?? 0));
done.then(() => process.exit(0));
