// Progress for CLI work that may take a while (waiting for etcd, scanning
// allocations). Only on a terminal: scripts reading stderr get no noise.

const FRAMES = ['|', '/', '-', '\\'];

export interface Progress {
  update(text: string): void;
  /** Clears the spinner; idempotent. */
  stop(): void;
}

export function startProgress(text: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return { update: () => undefined, stop: () => undefined };
  let current = text;
  let frame = 0;
  let stopped = false;
  const draw = () => stream.write(`\r\x1b[2K${FRAMES[frame++ % FRAMES.length]} ${current}`);
  // Shown only when the work outlasts a glance; quick commands print nothing extra.
  let timer: NodeJS.Timeout | undefined = setTimeout(() => {
    draw();
    timer = setInterval(draw, 100);
    timer.unref();
  }, 300);
  timer.unref();
  return {
    update(t: string) {
      current = t;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (timer) {
        clearTimeout(timer);
        clearInterval(timer);
      }
      if (frame > 0) stream.write('\r\x1b[2K');
    },
  };
}

/** Runs fn with a spinner that says what is being waited for. */
export async function withProgress<T>(text: string, fn: (p: Progress) => Promise<T>): Promise<T> {
  const p = startProgress(text);
  try {
    return await fn(p);
  } finally {
    p.stop();
  }
}
