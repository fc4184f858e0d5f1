/**
 * A small file system of its own for a node's files, to fill its disk (FS-FAIL-1): a tmpfs
 * mounted on a fresh folder. Mounting needs root; {@link canMountTmpfs} says whether it can.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';

/** True when this process may mount file systems (it runs as root). */
export const canMountTmpfs = process.getuid?.() === 0;

function mount(...args: string[]): void {
  const r = spawnSync('mount', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** Mounts a tmpfs of `size` (`8m`, say) on `dir`, created; resizable, and unmounted by `unmount`. */
export function mountTmpfs(dir: string, size: string): { resize(size: string): void; unmount(): void } {
  mkdirSync(dir, { recursive: true });
  mount('-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir);
  return {
    resize: (to) => mount('-o', `remount,size=${to}`, dir),
    unmount: () => void spawnSync('umount', ['-l', dir]),
  };
}
