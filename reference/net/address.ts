/**
 * Replication addresses in the syntax of zc.zrs's configuration (ZConfig's socket address
 * types): a unix socket path (anything containing `/`), `PORT`, `HOST:PORT` or
 * `[IPv6]:PORT`.
 * @module
 */
import { ZrsError } from '../errors.ts';

/** Where a primary listens or a secondary connects. */
export type Address =
  | { kind: 'tcp'; /** Empty for a bare port. */ host: string; port: number }
  | { kind: 'unix'; path: string };

/** The address text could not be understood. */
export class AddressError extends ZrsError {
  constructor(text: string, why: string) {
    super('ERR_ADDRESS', `invalid address ${JSON.stringify(text)}: ${why}`, 'WIRE-ADDR-2');
  }
}

function port(text: string, p: string): number {
  if (!/^[0-9]{1,5}$/.test(p) || Number(p) > 65535) throw new AddressError(text, `port ${JSON.stringify(p)} is not a number from 0 to 65535`);
  return Number(p);
}

/** Parses an address as zc.zrs's configuration does (host names are lower-cased). */
export function parseAddress(text: string): Address {
  const t = text.trim();
  if (t === '') throw new AddressError(text, 'empty');
  if (t.includes('/')) return { kind: 'unix', path: t };
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(t);
  if (v6) return { kind: 'tcp', host: v6[1]!.toLowerCase(), port: port(text, v6[2]!) };
  if (/^[0-9]+$/.test(t)) return { kind: 'tcp', host: '', port: port(text, t) };
  const parts = t.split(':');
  if (parts.length !== 2) {
    throw new AddressError(text, parts.length > 2 ? 'an IPv6 address needs brackets: [ADDRESS]:PORT' : 'expected HOST:PORT, PORT or a path');
  }
  if (parts[0] === '') throw new AddressError(text, 'empty host');
  return { kind: 'tcp', host: parts[0]!.toLowerCase(), port: port(text, parts[1]!) };
}

/** The address as text, in the same syntax. */
export function formatAddress(a: Address): string {
  if (a.kind === 'unix') return a.path;
  if (a.host === '') return String(a.port);
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** True when two addresses are the same once parsed (zc.zrs compares them this way). */
export function sameAddress(a: Address, b: Address): boolean {
  return formatAddress(a) === formatAddress(b);
}
