// What a secondary stores of an extension dict naming Python globals (wire-protocol §6.5,
// WIRE-EXT-1): as received by default, without those entries, or not at all.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { fileContent } from '../filestorage/content.ts';
import { FrameDecoder, PRIMARY_RECEIVE_LIMIT } from '../framing.ts';
import { encodeMessage } from '../messages.ts';
import { streamLogger } from '../net/log.ts';
import { loadPickle } from '../pickle/decoder.ts';
import { PyDict, PyGlobal, PyReduce, PyTuple } from '../pickle/values.ts';
import { type ExtensionPolicy, namedGlobal } from '../secondary/extension-policy.ts';
import { Secondary } from '../secondary/secondary.ts';
import { StreamEncoder } from '../stream.ts';
import { hex8, tidFromString } from '../timestamp.ts';
import { waitFor, workspace } from './helpers.ts';

const ws = workspace('extension-policy');
afterAll(() => ws.cleanup());

const TID = tidFromString('2026-12-07 10:00:00');
const marker = ws.file('ran');

/** A `T` whose extension is `{'app': 'zrs', 'run': os.system('touch MARKER')}`, as a hostile primary would send it. */
function hostileTransaction(): Buffer {
  const plain = Buffer.from(encodeMessage({ type: 'T', tid: TID, status: ' ', user: Buffer.alloc(0), description: Buffer.from('d'), extension: new PyDict([['app', 'zrs']]) }));
  const cmd = Buffer.from(`touch ${marker}`);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(cmd.length);
  // the dict ends with SETITEM `s` before the two TUPLE closers `tt.`
  const entry = Buffer.concat([Buffer.from('X\x03\x00\x00\x00runcos\nsystem\n(X', 'latin1'), len, cmd, Buffer.from('tRs', 'latin1')]);
  const end = plain.length - 3;
  return Buffer.concat([plain.subarray(0, end), entry, plain.subarray(end)]);
}

/** Serves the hostile transaction to every connection. */
async function primary(): Promise<{ port: number; connections: () => number; close: () => void }> {
  let n = 0;
  const server = net.createServer((socket) => {
    n++;
    const d = new FrameDecoder(PRIMARY_RECEIVE_LIMIT);
    const frames: Buffer[] = [];
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      frames.push(...d.push(chunk));
      if (frames.length !== 2) return;
      const e = new StreamEncoder(frames[1]!);
      const oid = Buffer.alloc(8);
      socket.write(Buffer.concat([...e.frame(hostileTransaction()), ...e.message({ type: 'S', oid, tid: TID, version: '', dataTxn: null }), ...e.frame(Buffer.from('(d.')), ...e.commit()]));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, connections: () => n, close: () => server.close() };
}

async function replicate(policy: ExtensionPolicy | undefined) {
  const p = await primary();
  const fs = ws.file('Data.fs');
  let log = '';
  const logger = streamLogger({ level: 'debug', out: { write: (s: string) => (log += s) }, name: 'secondary' });
  const s = await Secondary.start({ fs, from: { kind: 'tcp', host: '127.0.0.1', port: p.port }, reconnectDelay: 0.05, logger, ...(policy ? { extensionGlobals: policy } : {}) });
  if (policy === 'refuse') await waitFor('three refusals', () => p.connections() >= 3);
  else await waitFor('the transaction', () => hex8(s.lastTid) === hex8(TID));
  await s.close();
  p.close();
  return { fs, log, stored: fileContent(fs) };
}

describe('the extension policy of a secondary (WIRE-EXT-1)', () => {
  it('tells plain data from values that name a global, through lists, tuples, dicts and objects', () => {
    expect(namedGlobal(new PyDict([['a', [1n, new PyTuple(['x', new Uint8Array(2)])]]]))).toBeNull();
    expect(namedGlobal([new PyDict([['k', new PyReduce(new PyGlobal('os', 'system'), new PyTuple(['ls']))]])])).toBe('os.system');
    expect(namedGlobal(new PyTuple([new PyGlobal('builtins', 'eval')]))).toBe('builtins.eval');
    const shared: unknown[] = [];
    const deep = Array.from({ length: 100_000 }, () => shared) as never;
    expect(namedGlobal(deep), 'a list shared 100 000 times is walked once').toBeNull();
  });

  it('[WIRE-PICKLE-13] [WIRE-EXT-1] by default the extension is stored as received, global included', async () => {
    const { stored } = await replicate(undefined);
    const ext = loadPickle(Buffer.from(stored[0]!.extension, 'hex')) as PyDict;
    expect(namedGlobal(ext.get('run')!)).toBe('os.system');
    expect(existsSync(marker), 'nothing ran').toBe(false);
  });

  it('[WIRE-EXT-1] strip: the entry naming a global is not stored, the rest is, with a warning naming it', async () => {
    const { stored, fs, log } = await replicate('strip');
    const ext = loadPickle(Buffer.from(stored[0]!.extension, 'hex')) as PyDict;
    expect(ext.entries).toEqual([['app', 'zrs']]);
    expect(log).toMatch(/extension entries naming Python globals not stored: "run" \(os.system\)/);
    const python = process.env.ZRS_PYTHON;
    if (python) {
      // what a Python reader of the replica does with it: lists the undo log, runs nothing
      const r = spawnSync(python, ['-c', 'import sys\nfrom ZODB.FileStorage import FileStorage\nprint(FileStorage(sys.argv[1], read_only=True).undoLog(0, 9)[0]["app"])', fs], { encoding: 'utf8' });
      expect([r.status, r.stdout.trim()], r.stderr).toEqual([0, 'zrs']);
      expect(existsSync(marker)).toBe(false);
    }
  });

  it('[WIRE-EXT-1] refuse: the transaction is not applied, the error names the global, and the secondary tries again', async () => {
    const { stored, log } = await replicate('refuse');
    expect(stored).toEqual([]);
    expect(log).toMatch(/ERR_EXTENSION_GLOBALS|refused: its extension names Python globals in "run" \(os.system\)/);
  });
});
