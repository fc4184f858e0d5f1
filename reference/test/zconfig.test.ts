import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { readZrsConfig } from '../cli/zconfig.ts';
import { workspace } from './helpers.ts';

const ws = workspace('zconfig');
afterAll(() => ws.cleanup());

function config(text: string): string {
  const f = ws.file('zrs.conf');
  writeFileSync(f, text);
  return f;
}

describe('zc.zrs configuration files', () => {
  it('a primary: replicate-to with a unix socket and a blob directory', () => {
    const f = config(`%import zc.zrs\n\n<zrs>\n  replicate-to ./primary.sock\n  <filestorage>\n    path primary.fs\n    blob-dir primary-blobs\n  </filestorage>\n</zrs>\n`);
    expect(readZrsConfig(f)).toEqual({
      replicateTo: { kind: 'unix', path: './primary.sock' },
      replicateFrom: null,
      keepAliveDelay: 0,
      fs: 'primary.fs',
      blobDir: 'primary-blobs',
      readOnly: false,
    });
  });

  it('a chained secondary, with comments, %define, upper-case keys and keep-alive-delay', () => {
    const f = config(
      `# a chained node\n%import zc.zrs\n%define PORT 5001\n<zrs>\n  REPLICATE-FROM primary-host:5000\n  replicate-to $PORT\n  keep-alive-delay 60\n  <filestorage>\n    path /var/db/Data.fs\n  </filestorage>\n</zrs>\n`,
    );
    expect(readZrsConfig(f)).toMatchObject({
      replicateFrom: { kind: 'tcp', host: 'primary-host', port: 5000 },
      replicateTo: { kind: 'tcp', host: '', port: 5001 },
      keepAliveDelay: 60,
    });
  });

  it('[WIRE-ADDR-2] reads IPv6 addresses in brackets', () => {
    const f = config(`%import zc.zrs\n<zrs>\n  replicate-from [::1]:5000\n  <filestorage>\n    path s.fs\n  </filestorage>\n</zrs>\n`);
    expect(readZrsConfig(f).replicateFrom).toEqual({ kind: 'tcp', host: '::1', port: 5000 });
  });

  const zrs = (keys: string, storage = '  <filestorage>\n    path x.fs\n  </filestorage>\n') => `%import zc.zrs\n<zrs>\n${keys}${storage}</zrs>\n`;

  it.each([
    ['neither address (zc.zrs wording)', zrs(''), /zrs\.conf:2: You must specify replicate-to and\/or replicate-from\./],
    ['the same address twice (zc.zrs wording)', zrs('  replicate-to 5000\n  replicate-from 5000\n'), /:2: Values for replicate-to and replicate-from must be different\./],
    ['no %import', `<zrs>\n  replicate-to 5000\n  <filestorage>\n    path x.fs\n  </filestorage>\n</zrs>\n`, /:1: the section type zrs needs '%import zc\.zrs'/],
    ['an unknown key', zrs('  replicate-to 5000\n  replicate-too 5001\n'), /:4: unknown key replicate-too in <zrs>/],
    ['a key given twice', zrs('  replicate-to 5000\n  replicate-to 5001\n'), /:4: replicate-to given twice \(first on line 3\)/],
    ['a bad address', zrs('  replicate-from host:port\n'), /:3: replicate-from: invalid address "host:port": port "port"/],
    ['a fractional keep-alive-delay', zrs('  replicate-from 5000\n  keep-alive-delay 1.5\n'), /:4: keep-alive-delay: "1\.5" is not an integer/],
    ['no storage', zrs('  replicate-to 5000\n', ''), /:2: <zrs> must hold exactly one storage section, not 0/],
    ['another storage type', zrs('  replicate-to 5000\n', '  <mappingstorage>\n  </mappingstorage>\n'), /:4: <mappingstorage>: only <filestorage>/],
    ['a filestorage without path', zrs('  replicate-to 5000\n', '  <filestorage>\n  </filestorage>\n'), /:4: <filestorage> needs a path/],
    ['an unclosed section', `%import zc.zrs\n<zrs>\n  replicate-to 5000\n`, /:2: <zrs> is never closed/],
    ['a mismatched end tag', `%import zc.zrs\n<zrs>\n  replicate-to 5000\n</zrsx>\n`, /:4: <\/zrsx> does not match <zrs> of line 2/],
    ['an undefined substitution', zrs('  replicate-to $NOPE\n'), /:3: undefined substitution \$nope/],
    ['an address where ZooKeeper wants a path (DISC-CONF-3)', zrs('  zookeeper zk:2181\n  replicate-to 5000\n'), /:4: replicate-to: with ZooKeeper this is a ZooKeeper path/],
  ])('refuses %s, naming the file and line', (_name, text, message) => {
    const f = config(text);
    expect(() => readZrsConfig(f)).toThrow(message);
  });

  it('refuses a file that cannot be read', () => {
    expect(() => readZrsConfig('/nonexistent/zrs.conf')).toThrow(/\/nonexistent\/zrs\.conf: cannot read: ENOENT/);
  });
});
