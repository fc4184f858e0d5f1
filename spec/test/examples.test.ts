// Every `hex` byte example in the spec (spec/README.md, "Byte examples") is decoded with the
// reference codec and encoded again; the bytes must come back unchanged.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, PRIMARY_RECEIVE_LIMIT } from '../../reference/framing.ts';
import {
  decodeDataRecord,
  decodeTxnRecord,
  encodeDataRecord,
  encodeTxnRecord,
  MAGIC_SIZE,
  TRAILER_SIZE,
} from '../../reference/filestorage/records.ts';
import { decodeMessage, encodeMessage } from '../../reference/messages.ts';
import { StreamDecoder } from '../../reference/stream.ts';
import { tidToString } from '../../reference/timestamp.ts';
import { SPEC_DIR, specDocuments } from '../tools/requirements.ts';

interface Example {
  document: string;
  line: number;
  kind: string;
  args: string[];
  params: Record<string, string>;
  body: string;
}

function examples(): Example[] {
  const out: Example[] = [];
  for (const document of specDocuments()) {
    const lines = readFileSync(path.join(SPEC_DIR, document), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^\s*```hex(?:\s+(.*))?$/.exec(lines[i]!);
      if (!open) continue;
      const words = (open[1] ?? '').trim().split(/\s+/).filter(Boolean);
      const params: Record<string, string> = {};
      const args: string[] = [];
      for (const w of words.slice(1)) {
        const eq = w.indexOf('=');
        if (eq > 0) params[w.slice(0, eq)] = w.slice(eq + 1);
        else args.push(w);
      }
      const start = i;
      const body: string[] = [];
      while (++i < lines.length && !/^\s*```\s*$/.test(lines[i]!)) body.push(lines[i]!);
      out.push({ document, line: start + 1, kind: words[0] ?? '', args, params, body: body.join('\n') });
    }
  }
  return out;
}

/** Bytes of a hex block: `#` comments and white space removed. */
function bytesOf(body: string): Buffer {
  const digits = body.replace(/#.*$/gm, '').replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new Error('hex block holds something other than pairs of hex digits');
  return Buffer.from(digits, 'hex');
}

function frames(bytes: Buffer, limit?: number): Buffer[] {
  const d = new FrameDecoder(limit);
  const out = d.push(bytes);
  expect(d.idle, 'bytes end inside a frame').toBe(true);
  expect(Buffer.concat(out.map((f) => encodeFrame(f))).equals(bytes)).toBe(true);
  return out;
}

const check: Record<string, (e: Example) => void> = {
  handshake(e) {
    const [id, tid, ...rest] = frames(bytesOf(e.body), PRIMARY_RECEIVE_LIMIT);
    expect(['zrs2.0', 'zrs2.1']).toContain(id!.toString('latin1'));
    expect(tid).toHaveLength(8);
    expect(rest.every((f) => f.length === 0), 'only keep-alives may follow').toBe(true);
  },
  frames(e) {
    frames(bytesOf(e.body));
  },
  message(e) {
    const bytes = bytesOf(e.body);
    const m = decodeMessage(bytes);
    const [type] = e.args;
    expect(type === 'C0' ? m.type === 'C' && m.checksum === null : m.type === type).toBe(true);
    expect(encodeMessage(m).equals(bytes)).toBe(true);
  },
  'py2-message'(e) {
    const m = decodeMessage(bytesOf(e.body));
    expect(m.type).toBe(e.args[0]);
    expect(decodeMessage(encodeMessage(m))).toEqual(m);
  },
  stream(e) {
    const start = e.params.start;
    expect(start, 'stream examples name their start tid').toMatch(/^[0-9a-f]{16}$/);
    const decoder = new StreamDecoder(Buffer.from(start!, 'hex'));
    const all = frames(bytesOf(e.body));
    let commits = 0;
    for (const f of all) {
      const event = decoder.push(f);
      if (event?.kind === 'commit') commits++;
    }
    expect(commits, 'a stream example shows at least one whole transaction').toBeGreaterThan(0);
  },
  'fs-transaction'(e) {
    const bytes = bytesOf(e.body);
    const offset = Number(e.params.offset);
    const t = decodeTxnRecord(bytes, offset);
    expect(t.tlen + TRAILER_SIZE).toBe(bytes.length);
    for (const r of t.records) expect(r.tloc).toBe(offset);
    expect(encodeTxnRecord(t).equals(bytes)).toBe(true);
  },
  'fs-data-record'(e) {
    const bytes = bytesOf(e.body);
    const r = decodeDataRecord(bytes, Number(e.params.offset));
    expect(encodeDataRecord(r).equals(bytes)).toBe(true);
  },
  'fs-file'(e) {
    const bytes = bytesOf(e.body);
    expect(['FS30', 'FS21']).toContain(bytes.subarray(0, MAGIC_SIZE).toString('latin1'));
    const parts = [bytes.subarray(0, MAGIC_SIZE)];
    let at = MAGIC_SIZE;
    while (at < bytes.length) {
      const t = decodeTxnRecord(bytes.subarray(at), at);
      parts.push(encodeTxnRecord(t));
      at += t.tlen + TRAILER_SIZE;
    }
    expect(Buffer.concat(parts).equals(bytes)).toBe(true);
  },
  tids(e) {
    const rows = e.body.replace(/#.*$/gm, '').split('\n').map((l) => l.trim()).filter(Boolean);
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      const m = /^([0-9a-f]{16})\s+(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6})$/.exec(row);
      expect(m, `row ${JSON.stringify(row)}`).not.toBeNull();
      expect(tidToString(Buffer.from(m![1]!, 'hex'))).toBe(m![2]);
    }
  },
};

describe('byte examples of the spec', () => {
  const all = examples();

  it('the spec has byte examples of every kind', () => {
    expect(new Set(all.map((e) => e.kind))).toEqual(new Set(Object.keys(check)));
  });

  it.each(all.map((e) => [`${e.document}:${e.line} hex ${e.kind} ${e.args.join(' ')}`, e] as const))('%s', (_title, e) => {
    const run = check[e.kind];
    expect(run, `unknown example kind ${JSON.stringify(e.kind)}`).toBeDefined();
    run!(e);
  });
});
