import path from 'node:path';
import { spawn } from 'node:child_process';
import { PrivateDockerd } from './dockerd';

export const TEST_IMAGE = 'calico-test/busybox:latest';
const ROOTFS_SCRIPT = path.join(__dirname, '..', '..', '..', 'docker', 'test-image', 'build-rootfs.sh');

/**
 * Builds the local test image (Debian's static busybox) into a dockerd with
 * `docker import`: there is no registry on our machines. Idempotent.
 */
export async function ensureTestImage(d: PrivateDockerd, tag = TEST_IMAGE): Promise<string> {
  const has = await d.docker(['image', 'inspect', '-f', '{{.Id}}', tag]);
  if (has.code === 0) return tag;
  await new Promise<void>((resolve, reject) => {
    const build = spawn('sh', [ROOTFS_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    const imp = spawn(
      'docker',
      ['-H', d.host, 'import', '-c', 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin', '-c', 'CMD ["/bin/sh"]', '-', tag],
      { stdio: ['pipe', 'ignore', 'pipe'] },
    );
    let err = '';
    build.stderr!.on('data', (b) => (err += b));
    imp.stderr!.on('data', (b) => (err += b));
    build.stdout!.pipe(imp.stdin!);
    let pending = 2;
    const done = (what: string) => (code: number | null) => {
      if (code !== 0) reject(new Error(`building test image ${tag}: ${what} exited ${code}: ${err.trim()}`));
      else if (--pending === 0) resolve();
    };
    build.on('close', done('build-rootfs.sh'));
    imp.on('close', done('docker import'));
  });
  return tag;
}
