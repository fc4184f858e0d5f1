/** Helpers for tests that run real nodes over real sockets and files. */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A temporary folder, removed by `cleanup`. */
export function workspace(prefix: string): { dir: string; file: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), `zrs-${prefix}-`));
  let n = 0;
  return {
    dir,
    file: (name) => path.join(dir, `${n++}-${name}`),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Copies a file or folder. */
export function copy(from: string, to: string): string {
  cpSync(from, to, { recursive: true });
  return to;
}

/** Waits until `condition` holds, polling; fails after `timeoutMs` naming `what`. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export { fileContent } from '../filestorage/content.ts';

/** Every file below a folder, relative path → content, skipping `tmp/`. */
export function folderContent(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) {
        if (name !== 'tmp') walk(p);
      } else out[path.relative(dir, p)] = readFileSync(p).toString('hex');
    }
  };
  walk(dir);
  return out;
}
