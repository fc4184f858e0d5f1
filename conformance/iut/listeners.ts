/**
 * Whose listening socket is it? On Linux, /proc tells which sockets listen on a port or a Unix
 * path and which process holds each, so that the harness takes a node for ready only when the
 * node itself listens, not another process that took its port (spec/conformance.md, CONF-READY-1).
 * @module
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

const LISTEN = '0A'; // TCP state LISTEN in /proc/net/tcp
const UNIX_LISTENING = 0x10000; // __SO_ACCEPTCON in the flags of /proc/net/unix

function read(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Inodes of the sockets listening on TCP `port` (any address) or on the Unix socket `path`; null where /proc cannot tell. */
function listeningInodes(at: number | string): Set<string> | null {
  const inodes = new Set<string>();
  if (typeof at === 'number') {
    const tables = ['/proc/net/tcp', '/proc/net/tcp6'].map(read);
    if (tables.every((t) => t === null)) return null;
    for (const line of tables.flatMap((t) => (t ?? '').split('\n').slice(1))) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[3] === LISTEN && parseInt(f[1]!.split(':')[1]!, 16) === at) inodes.add(f[9]!);
    }
  } else {
    const table = read('/proc/net/unix');
    if (table === null) return null;
    for (const line of table.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 8 && f[7] === at && (parseInt(f[3]!, 16) & UNIX_LISTENING) !== 0) inodes.add(f[6]!);
    }
  }
  return inodes;
}

/** `pid` and its descendants; null where the kernel does not list children (no CONFIG_PROC_CHILDREN). */
function family(pid: number): number[] | null {
  if (read(`/proc/${pid}/task/${pid}/children`) === null) return null;
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) for (const c of (read(`/proc/${out[i]}/task/${t}/children`) ?? '').split(/\s+/)) if (c) out.push(Number(c));
  }
  return out;
}

/**
 * Whether process `pid` (or a process it started) listens on TCP `port` or on the Unix socket
 * `path`; null when /proc cannot tell (not Linux), in which case the caller falls back on
 * connecting.
 */
export function listensOn(pid: number, at: number | string): boolean | null {
  const inodes = listeningInodes(at);
  if (inodes === null) return null;
  if (inodes.size === 0) return false;
  const processes = family(pid);
  if (processes === null) return null;
  for (const p of processes) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return true;
      } catch {
        // the descriptor closed meanwhile
      }
    }
  }
  return false;
}
