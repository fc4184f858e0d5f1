/**
 * Reads a ZConfig file in zc.zrs's syntax: `%import zc.zrs`, then a `<zrs>` section with
 * `replicate-to`, `replicate-from` and `keep-alive-delay`, holding one `<filestorage>`
 * section with `path` and optionally `blob-dir`. Errors name the file and line. The keys
 * `zookeeper` and `replicate-from-zookeeper` turn `replicate-to` and `replicate-from` into
 * ZooKeeper paths (spec/discovery.md §2).
 * @module
 */
import { readFileSync } from 'node:fs';
import { ZrsError } from '../errors.ts';
import { type Address, parseAddress, sameAddress } from '../net/address.ts';
import { isZooKeeperPath } from '../discovery/path.ts';

/** A configuration file is malformed or invalid. */
export class ConfigError extends ZrsError {
  constructor(file: string, line: number | null, message: string) {
    super('ERR_CONFIG', `${file}${line ? `:${line}` : ''}: ${message}`);
  }
}

/** What a `<zrs>` section asks for. */
export interface ZrsConfig {
  replicateTo: Address | null;
  replicateFrom: Address | null;
  keepAliveDelay: number;
  fs: string;
  blobDir: string | null;
  /** `read-only true` in `<filestorage>`: the file is only read (a primary follows it; a secondary is refused). */
  readOnly: boolean;
  /** Present when the section has `zookeeper` or `replicate-from-zookeeper` (DISC-CONF-1, DISC-CONF-2). */
  zookeeper?: ZooKeeperConfig;
}

/** Registration and discovery through ZooKeeper, as a `<zrs>` section asks for them. */
export interface ZooKeeperConfig {
  /** The `zookeeper` connection string, used to register; null when only `replicate-from-zookeeper` is given. */
  connect: string | null;
  /** The path of `replicate-to` to register under (then `replicateTo` is all interfaces, port 0). */
  registerPath: string | null;
  /** The connection string to discover with: `replicate-from-zookeeper`, else `zookeeper`. */
  discoverConnect: string | null;
  /** The path of `replicate-from` to discover the primary under (then `replicateFrom` is null). */
  discoverPath: string | null;
}

interface Section {
  type: string;
  line: number;
  keys: Map<string, { value: string; line: number }>;
  children: Section[];
}

const ZRS_KEYS = new Set(['replicate-to', 'replicate-from', 'keep-alive-delay', 'zookeeper', 'replicate-from-zookeeper']);
/** Keys of ZODB's `<filestorage>` other than path and blob-dir: accepted, not used (`create true` is refused). */
const FILESTORAGE_KEYS = new Set(['path', 'blob-dir', 'create', 'read-only', 'quota', 'packer', 'pack-gc', 'pack-keep-old']);

/** Parses the file into sections (ZConfig syntax: comments, `%define`, `%import`, sections, keys). */
function parse(file: string, text: string): { imports: Set<string>; root: Section } {
  const root: Section = { type: '', line: 0, keys: new Map(), children: [] };
  const stack = [root];
  const imports = new Set<string>();
  const defines = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const n = i + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const expand = (v: string) =>
      v.replace(/\$(\$|\{(\w+)\}|(\w+))/g, (m, _all, braced: string | undefined, bare: string | undefined) => {
        if (m === '$$') return '$';
        const name = (braced ?? bare)!.toLowerCase();
        const value = defines.get(name);
        if (value === undefined) throw new ConfigError(file, n, `undefined substitution $${name}`);
        return value;
      });
    if (line.startsWith('%')) {
      const [directive, ...rest] = line.slice(1).split(/\s+/);
      if (directive === 'import' && rest.length === 1) return void imports.add(rest[0]!);
      if (directive === 'define' && rest.length >= 1) return void defines.set(rest[0]!.toLowerCase(), expand(rest.slice(1).join(' ')));
      throw new ConfigError(file, n, `unknown or malformed directive ${JSON.stringify(line)}`);
    }
    const close = /^<\/\s*([\w.-]+)\s*>$/.exec(line);
    if (close) {
      const top = stack.pop()!;
      if (top === root) throw new ConfigError(file, n, `</${close[1]}> closes nothing`);
      if (top.type !== close[1]!.toLowerCase()) throw new ConfigError(file, n, `</${close[1]}> does not match <${top.type}> of line ${top.line}`);
      return;
    }
    const open = /^<\s*([\w.-]+)(\s+[^>]*)?>$/.exec(line);
    if (open) {
      const s: Section = { type: open[1]!.toLowerCase(), line: n, keys: new Map(), children: [] };
      stack.at(-1)!.children.push(s);
      stack.push(s);
      return;
    }
    if (line.startsWith('<')) throw new ConfigError(file, n, `malformed section tag ${JSON.stringify(line)}`);
    const kv = /^([\w.-]+)\s*(.*)$/.exec(line);
    if (!kv) throw new ConfigError(file, n, `cannot read ${JSON.stringify(line)}`);
    const key = kv[1]!.toLowerCase();
    const section = stack.at(-1)!;
    if (section.keys.has(key)) throw new ConfigError(file, n, `${key} given twice (first on line ${section.keys.get(key)!.line})`);
    section.keys.set(key, { value: expand(kv[2]!.trim()), line: n });
  });
  if (stack.length > 1) throw new ConfigError(file, stack.at(-1)!.line, `<${stack.at(-1)!.type}> is never closed`);
  return { imports, root };
}

function findZrs(s: Section): Section[] {
  return [...(s.type === 'zrs' ? [s] : []), ...s.children.flatMap(findZrs)];
}

/** Reads and validates the `<zrs>` section of a configuration file. */
export function readZrsConfig(file: string): ZrsConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, null, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const { imports, root } = parse(file, text);
  const found = findZrs(root);
  if (found.length === 0) throw new ConfigError(file, null, 'no <zrs> section');
  if (found.length > 1) throw new ConfigError(file, found[1]!.line, 'more than one <zrs> section');
  const zrs = found[0]!;
  if (!imports.has('zc.zrs')) throw new ConfigError(file, zrs.line, "the section type zrs needs '%import zc.zrs' before it");
  for (const [key, { line }] of zrs.keys) {
    if (!ZRS_KEYS.has(key)) throw new ConfigError(file, line, `unknown key ${key} in <zrs>`);
  }
  const connection = (key: string): string | null => {
    const k = zrs.keys.get(key);
    if (!k) return null;
    if (k.value === '' || /\s/.test(k.value)) throw new ConfigError(file, k.line, `${key}: ${JSON.stringify(k.value)} is not a ZooKeeper connection string (HOST:PORT[,HOST:PORT...][/CHROOT])`);
    return k.value;
  };
  const zookeeper = connection('zookeeper');
  const fromZookeeper = connection('replicate-from-zookeeper') ?? zookeeper;
  /** With ZooKeeper, the key holds a ZooKeeper path (DISC-CONF-3). */
  const zkPath = (key: string): string | null => {
    const k = zrs.keys.get(key);
    if (!k) return null;
    if (!isZooKeeperPath(k.value)) throw new ConfigError(file, k.line, `${key}: with ZooKeeper this is a ZooKeeper path such as /db/replication/providers, not ${JSON.stringify(k.value)}`);
    return k.value;
  };
  const address = (key: string): Address | null => {
    const k = zrs.keys.get(key);
    if (!k) return null;
    try {
      return parseAddress(k.value);
    } catch (e) {
      throw new ConfigError(file, k.line, `${key}: ${(e as Error).message}`);
    }
  };
  let replicateTo = address('replicate-to');
  let replicateFrom = address('replicate-from');
  if (replicateTo && replicateFrom && sameAddress(replicateTo, replicateFrom)) {
    throw new ConfigError(file, zrs.line, 'Values for replicate-to and replicate-from must be different.');
  }
  let zk: ZooKeeperConfig | undefined;
  if (zookeeper || fromZookeeper) {
    const registerPath = zookeeper ? zkPath('replicate-to') : null;
    const discoverPath = fromZookeeper ? zkPath('replicate-from') : null;
    // A registered node listens on all interfaces and a free port, as zc.zrs's ('', 0).
    if (registerPath) replicateTo = { kind: 'tcp', host: '', port: 0 };
    if (discoverPath) replicateFrom = null;
    zk = { connect: zookeeper, registerPath, discoverConnect: discoverPath ? fromZookeeper : null, discoverPath };
  }
  if (!replicateTo && !replicateFrom && !zk?.discoverPath) throw new ConfigError(file, zrs.line, 'You must specify replicate-to and/or replicate-from.');
  let keepAliveDelay = 0;
  const ka = zrs.keys.get('keep-alive-delay');
  if (ka) {
    if (!/^-?[0-9]+$/.test(ka.value)) throw new ConfigError(file, ka.line, `keep-alive-delay: ${JSON.stringify(ka.value)} is not an integer`);
    keepAliveDelay = Math.max(0, Number(ka.value));
  }
  if (zrs.children.length !== 1) {
    throw new ConfigError(file, zrs.line, `<zrs> must hold exactly one storage section, not ${zrs.children.length}`);
  }
  const storage = zrs.children[0]!;
  if (storage.type !== 'filestorage') {
    throw new ConfigError(file, storage.line, `<${storage.type}>: only <filestorage> is supported inside <zrs>`);
  }
  for (const [key, { line }] of storage.keys) {
    if (!FILESTORAGE_KEYS.has(key)) throw new ConfigError(file, line, `unknown key ${key} in <filestorage>`);
  }
  const create = storage.keys.get('create');
  // ZODB's `create true` empties an existing file at every start; a missing file it creates anyway.
  if (create && /^(true|yes|on)$/i.test(create.value)) {
    throw new ConfigError(file, create.line, 'create true would empty the file at every start, as ZODB does; zrs run does not do that: remove the key (a missing file is created)');
  }
  const fsPath = storage.keys.get('path');
  if (!fsPath || fsPath.value === '') throw new ConfigError(file, storage.line, '<filestorage> needs a path');
  const ro = storage.keys.get('read-only');
  if (ro && !/^(true|yes|on|false|no|off)$/i.test(ro.value)) throw new ConfigError(file, ro.line, `read-only is true or false, not ${JSON.stringify(ro.value)}`);
  const readOnly = ro !== undefined && /^(true|yes|on)$/i.test(ro.value);
  if (readOnly && (replicateFrom !== null || zk?.discoverPath)) throw new ConfigError(file, ro!.line, 'read-only true: a secondary writes its file');
  const blob = storage.keys.get('blob-dir');
  // Paths are taken as ZConfig takes them: relative to the working directory.
  return { replicateTo, replicateFrom, keepAliveDelay, fs: fsPath.value, blobDir: blob ? blob.value : null, readOnly, ...(zk ? { zookeeper: zk } : {}) };
}
