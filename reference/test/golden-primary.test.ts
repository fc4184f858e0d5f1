// The reference primary, serving the real files, sends byte for byte what the real zc.zrs
// primary sent for the same handshake (the captured transcripts).
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { Address } from '../net/address.ts';
import { Primary } from '../primary/primary.ts';
import { copy, waitFor, workspace } from './helpers.ts';
import { interopFile, interopJson, interopPath, type TranscriptInfo } from './interop.ts';

const ws = workspace('golden-primary');
afterAll(() => ws.cleanup());

const CASES = [
  { name: 'small-from-z64', store: 'small' },
  { name: 'small-after-txn9', store: 'small' },
  { name: 'small-zrs21-from-z64', store: 'small' },
  { name: 'undo-from-z64', store: 'undo' },
  { name: 'packed-from-z64', store: 'packed' },
  { name: 'blobs-from-z64', store: 'blobs' },
  { name: 'blobs-zrs20-refused', store: 'blobs' },
];

describe('the reference primary against the real one', () => {
  it.each(CASES)(
    '[WIRE-MSG-1] [WIRE-PICKLE-1] [WIRE-SUM-1] [WIRE-BLOB-3] $name: same bytes for the same handshake',
    async ({ name, store }) => {
      const fs = copy(interopPath(`${store}/Data.fs`), ws.file('Data.fs'));
      const blobDir = store === 'blobs' ? copy(interopPath('blobs/blobs'), ws.file('blobs')) : null;
      const primary = await Primary.start({ fs, listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, mode: 'follow', blobDir });
      const expected = interopFile(`transcripts/${name}.zrs`);
      const info = interopJson<TranscriptInfo>(`transcripts/${name}.zrs.json`);
      const socket = net.connect({ host: '127.0.0.1', port: (primary.address as Extract<Address, { kind: 'tcp' }>).port });
      const got: Buffer[] = [];
      let closed = false;
      socket.on('data', (d) => got.push(d));
      socket.on('close', () => (closed = true));
      socket.write(interopFile(`transcripts/${name}.zrs.sent`));
      await waitFor(`${info.bytes_received} bytes`, () => closed || Buffer.concat(got).length >= expected.length);
      await new Promise((r) => setTimeout(r, 100)); // nothing more may come
      expect(Buffer.concat(got).equals(expected)).toBe(true);
      expect(closed).toBe(expected.length === 0); // refused: closed; otherwise it waits for more
      socket.destroy();
      await primary.close(1000);
    },
  );
});
