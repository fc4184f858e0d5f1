/**
 * UTF-8 with Python's `surrogatepass` error handler, which the pickle protocol uses for
 * text: a lone surrogate code unit is written as its 3-byte form instead of failing.
 * @module
 */

const strict = new TextDecoder('utf-8', { fatal: true });

/** Encodes text as pickles do: UTF-8, lone surrogates passed through. */
export function encodeUtf8(text: string): Buffer {
  if (text.isWellFormed()) return Buffer.from(text, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const cp = text.codePointAt(i)!;
    if (cp > 0xffff) i++;
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else {
      out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    }
  }
  return Buffer.from(out);
}

/**
 * Decodes UTF-8 as pickles do; returns `undefined` when the bytes are not UTF-8 even with
 * surrogates allowed.
 */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return strict.decode(bytes);
  } catch {
    return decodeSurrogatePass(bytes);
  }
}

function decodeSurrogatePass(b: Uint8Array): string | undefined {
  let s = '';
  let i = 0;
  const cont = (k: number): number => {
    const c = b[k];
    return c !== undefined && (c & 0xc0) === 0x80 ? c & 0x3f : -1;
  };
  while (i < b.length) {
    const c = b[i]!;
    let cp: number;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if (c >= 0xc2 && c < 0xe0) {
      const c1 = cont(i + 1);
      if (c1 < 0) return undefined;
      cp = ((c & 0x1f) << 6) | c1;
      i += 2;
    } else if (c >= 0xe0 && c < 0xf0) {
      const c1 = cont(i + 1);
      const c2 = cont(i + 2);
      if (c1 < 0 || c2 < 0) return undefined;
      cp = ((c & 0x0f) << 12) | (c1 << 6) | c2;
      if (cp < 0x800) return undefined;
      i += 3;
    } else if (c >= 0xf0 && c < 0xf5) {
      const c1 = cont(i + 1);
      const c2 = cont(i + 2);
      const c3 = cont(i + 3);
      if (c1 < 0 || c2 < 0 || c3 < 0) return undefined;
      cp = ((c & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3;
      if (cp < 0x10000 || cp > 0x10ffff) return undefined;
      i += 4;
    } else return undefined;
    s += String.fromCodePoint(cp);
  }
  return s;
}
