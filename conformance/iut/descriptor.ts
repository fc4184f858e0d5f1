/**
 * The IUT descriptor (spec/conformance.md §3): a small JSON file that says how to start an
 * implementation's primary and secondary, how to tell that a node is ready, and which
 * optional features it claims. This module validates one, with errors that name the file and
 * the JSON path, and expands its argument templates.
 * @module
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { maxIntDigits, PICKLE_LIMIT_FLOOR } from '../../reference/pickle/limits.ts';

/** Optional features an implementation may claim. */
export const FEATURES = ['blobs', 'unix', 'fractionalDelays', 'chaining', 'follow', 'control', 'zconfig', 'discovery'] as const;
export type Feature = (typeof FEATURES)[number];

/** Placeholders an argument template may use. */
export const PLACEHOLDERS = ['fs', 'listen', 'from', 'keepAliveDelay', 'reconnectDelay', 'blobDir', 'config', 'zookeeper', 'providers'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** An argument template: words, and groups of words kept only when all their placeholders have values. */
export type Template = (string | string[])[];

/** How the harness knows a started node is ready. */
export type Readiness = { kind: 'control' } | { kind: 'port' } | { kind: 'stdout' | 'stderr'; pattern: RegExp };

/** How to start one role. */
export interface RoleCommand {
  command: string;
  args: Template;
  /** Extra arguments (a primary's) that make it follow a file another process writes (feature `follow`). */
  followArgs: Template;
  /** Arguments used instead of `args` when a case starts the node from a configuration file it wrote, `{config}` (feature `zconfig`); `args` when absent. */
  configArgs: Template | null;
  /** Extra arguments (a primary's) that make it register in ZooKeeper (feature `discovery`). */
  registerArgs: Template;
  /** Extra arguments (a secondary's, started without `from`) that make it find its primary in ZooKeeper (feature `discovery`). */
  discoverArgs: Template;
  /** Extra environment variables. */
  env: Record<string, string>;
  ready: Readiness;
}

/**
 * The limits an implementation's nodes enforce as the harness starts them (wire-protocol §3.1
 * and §9.7), when it declares them: the harness then sends just over each.
 */
export interface Limits {
  /** A secondary's largest control message, in bytes (WIRE-FRAME-8). */
  maxMessageSize?: number;
  /** A secondary's largest record data frame or blob chunk, in bytes (WIRE-FRAME-9). */
  maxRecordSize?: number;
  /** Seconds a primary waits for a handshake (WIRE-LIMIT-1). */
  handshakeTimeout?: number;
  /** Connections a primary holds open at once (WIRE-LIMIT-3). */
  maxConnections?: number;
  /** The most values a secondary's decoding of one control message creates (wire-protocol §6.7, WIRE-PICKLE-20). */
  maxPickleValues?: number;
  /** The deepest control message a secondary decodes and stores, the message tuple counting 1. */
  maxPickleDepth?: number;
  /** The most digits of a decimal integer (`INT`, `LONG`) in a control message. */
  maxPickleIntDigits?: number;
  /** The largest memo expansion of a control message; declaring it says memo opcodes are accepted (WIRE-PICKLE-11). */
  maxPickleExpansion?: number;
}

const LIMITS = ['maxMessageSize', 'maxRecordSize', 'handshakeTimeout', 'maxConnections', 'maxPickleValues', 'maxPickleDepth', 'maxPickleIntDigits', 'maxPickleExpansion'] as const;

/** A validated descriptor. */
export interface Descriptor {
  name: string;
  /** The folder the descriptor was read from; relative paths in it are resolved there. */
  dir: string;
  primary: RoleCommand | null;
  secondary: RoleCommand | null;
  features: Set<Feature>;
  limits: Limits;
  /** Path of the expected-failures file, if any. */
  expectedFailures: string | null;
}

/** A descriptor is malformed. */
export class DescriptorError extends Error {
  readonly code = 'ERR_IUT_DESCRIPTOR';
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function fail(file: string, where: string, message: string): never {
  throw new DescriptorError(`${file}: ${where}: ${message}`);
}

function object(file: string, where: string, v: Json | undefined, keys: string[]): { [k: string]: Json } {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(file, where, 'must be an object');
  for (const k of Object.keys(v)) if (!keys.includes(k)) fail(file, `${where}.${k}`, `unknown field (known: ${keys.join(', ')})`);
  return v;
}

function string(file: string, where: string, v: Json | undefined): string {
  if (typeof v !== 'string' || v === '') fail(file, where, 'must be a non-empty string');
  return v;
}

function template(file: string, where: string, v: Json | undefined): Template {
  if (!Array.isArray(v)) fail(file, where, 'must be an array of strings and arrays of strings');
  return v.map((item, i) => {
    const at = `${where}[${i}]`;
    if (typeof item === 'string') return checkPlaceholders(file, at, item);
    if (Array.isArray(item) && item.length > 0 && item.every((w) => typeof w === 'string')) {
      return item.map((w, j) => checkPlaceholders(file, `${at}[${j}]`, w as string));
    }
    return fail(file, at, 'must be a string or a non-empty array of strings');
  });
}

function checkPlaceholders(file: string, where: string, word: string): string {
  for (const m of word.matchAll(/\{(\w+)\}/g)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(m[1]!)) {
      fail(file, where, `unknown placeholder {${m[1]}} (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(', ')})`);
    }
  }
  return word;
}

function readiness(file: string, where: string, v: Json | undefined): Readiness {
  if (v === 'control' || v === 'port') return { kind: v };
  const o = object(file, where, v, ['stdout', 'stderr']);
  const keys = Object.keys(o);
  if (keys.length !== 1) fail(file, where, 'must be "control", "port", {"stdout": REGEX} or {"stderr": REGEX}');
  const kind = keys[0] as 'stdout' | 'stderr';
  const pattern = string(file, `${where}.${kind}`, o[kind]);
  try {
    return { kind, pattern: new RegExp(pattern) };
  } catch (e) {
    return fail(file, `${where}.${kind}`, `not a regular expression: ${(e as Error).message}`);
  }
}

/**
 * The program of a role: `${NAME}` and `${NAME:-default}` are replaced by the environment
 * variable NAME (or the default when it is unset or empty), so that a descriptor can name an
 * interpreter or a virtualenv without relying on PATH; a relative path is the descriptor's folder's.
 */
export function expandCommand(file: string, where: string, command: string, env: NodeJS.ProcessEnv = process.env): string {
  const out = command.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
    if (fallback !== undefined) return fallback;
    return fail(file, where, `the environment variable ${name} is not set (write \${${name}:-DEFAULT} for a default)`);
  });
  if (out === '') fail(file, where, 'is empty once expanded');
  if (!out.includes('/')) return out; // a name, found on PATH
  // a path from the environment is the caller's (relative to where the harness runs); one written in the descriptor, the descriptor's
  return path.resolve(command.startsWith('${') ? process.cwd() : path.dirname(path.resolve(file)), out);
}

function role(file: string, where: string, v: Json | undefined, features: Set<Feature>): RoleCommand | null {
  if (v === undefined || v === null) return null;
  const o = object(file, where, v, ['command', 'args', 'env', 'ready', 'followArgs', 'registerArgs', 'discoverArgs', 'configArgs']);
  const env = o.env === undefined ? {} : object(file, `${where}.env`, o.env, Object.keys(o.env as object));
  for (const [k, x] of Object.entries(env)) if (typeof x !== 'string') fail(file, `${where}.env.${k}`, 'must be a string');
  const ready = readiness(file, `${where}.ready`, o.ready);
  if (ready.kind === 'control' && !features.has('control')) fail(file, `${where}.ready`, '"control" needs the feature "control"');
  const extra = (key: 'followArgs' | 'registerArgs' | 'discoverArgs' | 'configArgs', feature: Feature): Template | null => {
    if (o[key] === undefined) return null;
    if (!features.has(feature)) fail(file, `${where}.${key}`, `needs the feature "${feature}"`);
    return template(file, `${where}.${key}`, o[key]);
  };
  return {
    command: expandCommand(file, `${where}.command`, string(file, `${where}.command`, o.command)),
    args: template(file, `${where}.args`, o.args),
    followArgs: extra('followArgs', 'follow') ?? [],
    registerArgs: extra('registerArgs', 'discovery') ?? [],
    discoverArgs: extra('discoverArgs', 'discovery') ?? [],
    configArgs: extra('configArgs', 'zconfig'),
    env: env as Record<string, string>,
    ready,
  };
}

/** Reads and validates a descriptor file. */
export function readDescriptor(file: string): Descriptor {
  let raw: Json;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Json;
  } catch (e) {
    throw new DescriptorError(`${file}: cannot read it as JSON: ${(e as Error).message}`);
  }
  const o = object(file, '$', raw, ['$schema', 'name', 'primary', 'secondary', 'features', 'limits', 'expectedFailures', 'description']);
  const features = new Set<Feature>();
  if (o.features !== undefined) {
    if (!Array.isArray(o.features)) fail(file, '$.features', 'must be an array');
    o.features.forEach((f, i) => {
      if (typeof f !== 'string' || !(FEATURES as readonly string[]).includes(f)) {
        fail(file, `$.features[${i}]`, `unknown feature ${JSON.stringify(f)} (known: ${FEATURES.join(', ')})`);
      }
      features.add(f as Feature);
    });
  }
  const dir = path.dirname(path.resolve(file));
  const primary = role(file, '$.primary', o.primary, features);
  const secondary = role(file, '$.secondary', o.secondary, features);
  if (!primary && !secondary) fail(file, '$', 'describes neither a primary nor a secondary');
  return {
    name: string(file, '$.name', o.name),
    dir,
    primary,
    secondary,
    features,
    limits: o.limits === undefined ? {} : limits(file, o.limits),
    expectedFailures: o.expectedFailures === undefined ? null : path.resolve(dir, string(file, '$.expectedFailures', o.expectedFailures)),
  };
}

function limits(file: string, v: Json): Limits {
  const o = object(file, '$.limits', v, [...LIMITS]);
  const out: Limits = {};
  for (const k of LIMITS) {
    const x = o[k];
    if (x === undefined) continue;
    const whole = k !== 'handshakeTimeout';
    if (typeof x !== 'number' || !(x > 0) || (whole && !Number.isInteger(x)) || (k.endsWith('Size') && x >= 2 ** 32 - 1)) {
      fail(file, `$.limits.${k}`, whole ? 'must be a whole number above 0' + (k.endsWith('Size') ? ' and below 2^32 - 1' : '') : 'must be a number of seconds above 0');
    }
    const floor = DECODING_FLOOR[k as keyof typeof DECODING_FLOOR];
    if (floor !== undefined && x < floor) fail(file, `$.limits.${k}`, `must be at least ${floor}, what every decoder accepts (wire-protocol §6.7)`);
    out[k] = x;
  }
  return out;
}

/** The least a secondary may declare of each decoding limit: the floors of wire-protocol §6.7. */
const DECODING_FLOOR = {
  maxPickleValues: PICKLE_LIMIT_FLOOR.maxItems,
  maxPickleDepth: PICKLE_LIMIT_FLOOR.maxDepth,
  maxPickleIntDigits: maxIntDigits(PICKLE_LIMIT_FLOOR.maxIntBytes),
  maxPickleExpansion: PICKLE_LIMIT_FLOOR.maxExpansion,
};

/** Expands a template: placeholders replaced, groups with a missing value dropped. */
export function expandArgs(t: Template, values: Partial<Record<Placeholder, string>>): string[] {
  const fill = (word: string): string | null => {
    let missing = false;
    const out = word.replace(/\{(\w+)\}/g, (_m, name: Placeholder) => {
      const v = values[name];
      if (v === undefined) missing = true;
      return v ?? '';
    });
    return missing ? null : out;
  };
  const args: string[] = [];
  for (const item of t) {
    if (typeof item === 'string') {
      const w = fill(item);
      if (w === null) throw new DescriptorError(`argument ${JSON.stringify(item)} needs a value the harness did not give; put it in a group`);
      args.push(w);
    } else {
      const words = item.map(fill);
      if (words.every((w) => w !== null)) args.push(...(words as string[]));
    }
  }
  return args;
}
