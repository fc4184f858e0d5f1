import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expandArgs, readDescriptor } from '../iut/descriptor.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'zrs-descriptor-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(content: unknown): string {
  const f = path.join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return f;
}

const primary = { command: 'node', args: ['p.js', '--fs', '{fs}', '--listen', '{listen}'], ready: 'port' };

describe('IUT descriptors', () => {
  it('every descriptor shipped in conformance/iut is valid', () => {
    const iutDir = path.resolve(import.meta.dirname, '../iut');
    const files = readdirSync(iutDir).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(() => readDescriptor(path.join(iutDir, f)), f).not.toThrow();
  });

  it.each([
    ['not JSON', '{', /cannot read it as JSON/],
    ['no name', { primary }, /\$\.name: must be a non-empty string/],
    ['an unknown field', { name: 'x', primary, colour: 'red' }, /\$\.colour: unknown field/],
    ['no role', { name: 'x' }, /describes neither a primary nor a secondary/],
    ['an unknown feature', { name: 'x', primary, features: ['teleport'] }, /\$\.features\[0\]: unknown feature "teleport"/],
    ['an unknown placeholder', { name: 'x', primary: { ...primary, args: ['{port}'] } }, /\$\.primary\.args\[0\]: unknown placeholder \{port\}/],
    ['control readiness without the feature', { name: 'x', primary: { ...primary, ready: 'control' } }, /needs the feature "control"/],
    ['followArgs without the feature', { name: 'x', primary: { ...primary, followArgs: ['--follow'] } }, /\$\.primary\.followArgs: needs the feature "follow"/],
    ['registerArgs without the feature', { name: 'x', primary: { ...primary, registerArgs: ['--register', '{providers}'] } }, /\$\.primary\.registerArgs: needs the feature "discovery"/],
    ['discoverArgs with an unknown placeholder', { name: 'x', features: ['discovery'], secondary: { ...primary, discoverArgs: ['{zk}'] } }, /\$\.secondary\.discoverArgs\[0\]: unknown placeholder \{zk\}/],
    ['configArgs without the feature', { name: 'x', primary: { ...primary, configArgs: ['{config}'] } }, /\$\.primary\.configArgs: needs the feature "zconfig"/],
    ['a bad stdout pattern', { name: 'x', primary: { ...primary, ready: { stdout: '(' } } }, /\$\.primary\.ready\.stdout: not a regular expression/],
    ['two readiness patterns', { name: 'x', primary: { ...primary, ready: { stdout: 'a', stderr: 'b' } } }, /\$\.primary\.ready: must be "control", "port"/],
    ['a command naming an unset variable', { name: 'x', primary: { ...primary, command: '${ZRS_TEST_SURELY_UNSET}' } }, /\$\.primary\.command: the environment variable ZRS_TEST_SURELY_UNSET is not set/],
    ['an unknown limit', { name: 'x', primary, limits: { maxFrames: 3 } }, /\$\.limits\.maxFrames: unknown field/],
    ['a limit that is not a whole number', { name: 'x', primary, limits: { maxConnections: 2.5 } }, /\$\.limits\.maxConnections: must be a whole number above 0/],
    ['a size no frame header can exceed', { name: 'x', primary, limits: { maxRecordSize: 2 ** 32 - 1 } }, /\$\.limits\.maxRecordSize: must be a whole number above 0 and below 2\^32 - 1/],
    ['a timeout of 0', { name: 'x', primary, limits: { handshakeTimeout: 0 } }, /\$\.limits\.handshakeTimeout: must be a number of seconds above 0/],
    ['a decoding limit that is not a whole number', { name: 'x', primary, limits: { maxPickleDepth: 600.5 } }, /\$\.limits\.maxPickleDepth: must be a whole number above 0/],
    ['a decoding limit under the floor of the spec', { name: 'x', primary, limits: { maxPickleIntDigits: 4299 } }, /\$\.limits\.maxPickleIntDigits: must be at least 4300/],
  ])('refuses %s, naming the file and the JSON path', (_name, content, message) => {
    const f = write(content);
    expect(() => readDescriptor(f)).toThrow(message);
    expect(() => readDescriptor(f)).toThrow(f);
  });

  it('reads the limits it declares (none when absent)', () => {
    expect(readDescriptor(write({ name: 'x', primary, limits: { handshakeTimeout: 2.5, maxConnections: 7 } })).limits).toEqual({ handshakeTimeout: 2.5, maxConnections: 7 });
    expect(readDescriptor(write({ name: 'x', primary, limits: { maxPickleValues: 600000, maxPickleIntDigits: 4300 } })).limits).toEqual({ maxPickleValues: 600000, maxPickleIntDigits: 4300 });
    expect(readDescriptor(write({ name: 'x', primary })).limits).toEqual({});
  });

  it('reads a stderr readiness pattern', () => {
    expect(readDescriptor(write({ name: 'x', primary: { ...primary, ready: { stderr: 'listening on' } } })).primary!.ready).toEqual({ kind: 'stderr', pattern: /listening on/ });
  });

  it('names the program through the environment (a path relative to the working directory), with a default; a path written in the descriptor is relative to its folder', () => {
    const f = write({ name: 'x', primary: { ...primary, command: '${ZRS_TEST_PYTHON:-python3}' } });
    expect(readDescriptor(f).primary!.command).toBe('python3');
    process.env.ZRS_TEST_PYTHON = 'venv/bin/python3';
    try {
      expect(readDescriptor(f).primary!.command).toBe(path.resolve('venv/bin/python3'));
      expect(readDescriptor(write({ name: 'x', primary: { ...primary, command: 'venv/bin/python3' } })).primary!.command).toBe(path.join(dir, 'venv/bin/python3'));
      process.env.ZRS_TEST_PYTHON = '/opt/py/bin/python3';
      expect(readDescriptor(f).primary!.command).toBe('/opt/py/bin/python3');
    } finally {
      delete process.env.ZRS_TEST_PYTHON;
    }
  });

  it('expands templates, dropping groups whose placeholders have no value', () => {
    const t = ['secondary', '--fs', '{fs}', ['--blob-dir', '{blobDir}'], ['--keep-alive-delay', '{keepAliveDelay}']];
    expect(expandArgs(t, { fs: '/d/Data.fs', keepAliveDelay: '0.5' })).toEqual(['secondary', '--fs', '/d/Data.fs', '--keep-alive-delay', '0.5']);
    expect(() => expandArgs(['{fs}'], {})).toThrow(/needs a value the harness did not give/);
  });
});
