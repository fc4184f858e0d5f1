/**
 * `zrs lag [-w S] [-e S] [-m] PRIMARY SECONDARY`: how far a secondary is behind its primary,
 * in the manner of zc.zrs's `zrs-nagios`. Each node is given as the address of its status
 * server (`--status-listen`) or as the path of its FileStorage file. Exit status: 0 OK,
 * 1 warning, 2 critical (or a node that cannot be reached).
 * @module
 */
import { existsSync, statSync } from 'node:fs';
import http from 'node:http';
import { fileContent } from '../filestorage/content.ts';
import { type Address, parseAddress } from '../net/address.ts';
import type { NodeStatus } from '../net/status.ts';
import { tidToUnixSeconds } from '../timestamp.ts';
import { type Output } from './output.ts';

const USAGE = 'Usage: zrs lag [-w SECONDS] [-e SECONDS] [-m] PRIMARY SECONDARY';

/** The last tid of a node: from its status server, or from its file. */
async function lastTid(where: string): Promise<Buffer> {
  if (existsSync(where) && statSync(where).isFile()) {
    const last = fileContent(where).at(-1)?.tid ?? '0000000000000000';
    return Buffer.from(last, 'hex');
  }
  const a: Address = parseAddress(where);
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.get(
      a.kind === 'unix' ? { socketPath: a.path, path: '/status' } : { host: a.host || '127.0.0.1', port: a.port, path: '/status', timeout: 10_000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${res.statusCode}`))));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
  return Buffer.from((JSON.parse(body) as NodeStatus).lastTid, 'hex');
}

function seconds(args: string[], i: number, flag: string): number {
  const v = args[i + 1];
  if (v === undefined || !/^\d+(\.\d+)?$/.test(v)) throw new Error(`${flag} takes a number of seconds`);
  return Number(v);
}

export async function lag(args: string[], out: Output): Promise<number> {
  let warn = 0;
  let error = 0;
  let metrics = false;
  const nodes: string[] = [];
  try {
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      if (a === '-w' || a === '--warning') warn = seconds(args, i++, a);
      else if (a === '-e' || a === '--error') error = seconds(args, i++, a);
      else if (a === '-m' || a === '--output-metrics') metrics = true;
      else if (a.startsWith('-') && a.length > 1) throw new Error(`unknown option ${a}`);
      else nodes.push(a);
    }
  } catch (e) {
    out.stdout.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (nodes.length !== 2 || (!warn && !error && !metrics)) {
    out.stdout.write(`${USAGE}\n`);
    return 2;
  }
  const [primary, secondary] = nodes as [string, string];
  const tids: Buffer[] = [];
  // The secondary is asked first, so that a commit between the two questions cannot make it look ahead.
  for (const [name, where] of [['secondary', secondary], ['primary', primary]] as const) {
    try {
      tids.push(await lastTid(where));
    } catch (e) {
      out.stdout.write(`Can't connect to ${name} at '${where}': ${(e as Error).message}\n`);
      return 2;
    }
  }
  const [s, p] = tids as [Buffer, Buffer];
  const lagSeconds = tidToUnixSeconds(p) - tidToUnixSeconds(s);
  let level = 0;
  let line: string;
  if (lagSeconds < 0) {
    line = `Primary behind secondary by ${-lagSeconds} seconds`;
    level = 2;
  } else if (lagSeconds > 0) {
    line = `Secondary behind primary by ${lagSeconds.toFixed(4)} seconds`;
    if (error && lagSeconds > error) {
      line += ` > ${error}`;
      level = 2;
    } else if (warn && lagSeconds > warn) {
      line += ` > ${warn}`;
      level = 1;
    }
  } else line = 'Secondary up to date.';
  if (metrics) line += `|'lag'=${lagSeconds.toFixed(4)}seconds`;
  out.stdout.write(`${line}\n`);
  return level;
}
