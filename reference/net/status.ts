/**
 * Status of a running node for operators (`--status-listen ADDR`): `GET /status` answers a
 * JSON document, `GET /metrics` the same figures in Prometheus text format.
 * @module
 */
import http from 'node:http';
import { Gauge, Registry } from 'prom-client';
import { hex8, tidToString, tidToUnixSeconds, Z64 } from '../timestamp.ts';
import type { Address } from './address.ts';

/** One replication connection as a node sees it. */
export interface PeerStatus {
  peer: string;
  /** `downstream`: a secondary this node serves; `upstream`: the primary it replicates from. */
  direction: 'downstream' | 'upstream';
  connected: boolean;
  startTid: string | null;
  /** Downstream: last tid sent on the connection. Upstream: last tid applied. */
  lastTid: string | null;
  transactions: number;
  bytes: number;
  /** Downstream: how far the secondary is behind this node (seconds between tids, and transactions still to send). */
  lagSeconds?: number;
  lagTransactions?: number;
}

/** What `GET /status` answers. */
export interface NodeStatus {
  role: 'primary' | 'secondary' | 'chained';
  lastTid: string;
  lastTime: string;
  /** The last tid as seconds since the Unix epoch (null when there is no transaction). */
  lastUnixSeconds: number | null;
  peers: PeerStatus[];
}

/** Builds the status document from a last tid and peer list. */
export function nodeStatus(role: NodeStatus['role'], lastTid: Buffer, peers: PeerStatus[]): NodeStatus {
  return {
    role,
    lastTid: hex8(lastTid),
    lastTime: tidToString(lastTid),
    lastUnixSeconds: lastTid.equals(Z64) ? null : tidToUnixSeconds(lastTid),
    peers,
  };
}

/** Seconds between two tids (0 when `behind` is not older). */
export function lagSeconds(ahead: Buffer, behind: Buffer | null): number {
  if (!behind || behind.equals(Z64)) return ahead.equals(Z64) ? 0 : tidToUnixSeconds(ahead) - tidToUnixSeconds(Z64);
  return Math.max(0, tidToUnixSeconds(ahead) - tidToUnixSeconds(behind));
}

function metrics(s: NodeStatus): Registry {
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers: [registry] });
  gauge('zrs_last_transaction_timestamp_seconds', 'Time of the last committed transaction (its tid).').set(s.lastUnixSeconds ?? 0);
  const connections = gauge('zrs_connections', 'Replication connections, by direction.', ['direction']);
  const transactions = gauge('zrs_peer_transactions', 'Transactions sent (downstream) or applied (upstream) on the connection.', ['peer', 'direction']);
  const bytes = gauge('zrs_peer_bytes', 'Bytes sent (downstream) or received (upstream) on the connection.', ['peer', 'direction']);
  const lag = gauge('zrs_peer_lag_seconds', 'How far a downstream secondary is behind, in seconds between tids.', ['peer']);
  const lagTxns = gauge('zrs_peer_lag_transactions', 'Transactions still to send to a downstream secondary.', ['peer']);
  for (const direction of ['downstream', 'upstream'] as const) {
    connections.set({ direction }, s.peers.filter((p) => p.direction === direction && p.connected).length);
  }
  for (const p of s.peers) {
    transactions.set({ peer: p.peer, direction: p.direction }, p.transactions);
    bytes.set({ peer: p.peer, direction: p.direction }, p.bytes);
    if (p.lagSeconds !== undefined) lag.set({ peer: p.peer }, p.lagSeconds);
    if (p.lagTransactions !== undefined) lagTxns.set({ peer: p.peer }, p.lagTransactions);
  }
  return registry;
}

/** Serves `/status` and `/metrics` for `status()` on `address`; resolves with the bound address. */
export async function serveStatus(address: Address, status: () => NodeStatus): Promise<{ address: Address; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    void (async () => {
      const url = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET') return void res.writeHead(405).end();
      if (url === '/status') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(status(), null, 2)}\n`);
      } else if (url === '/metrics') {
        const registry = metrics(status());
        res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
      } else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /status or /metrics\n');
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (address.kind === 'unix') server.listen(address.path, resolve);
    else server.listen({ port: address.port, host: address.host || undefined }, resolve);
  });
  const bound = server.address();
  const actual: Address = bound && typeof bound === 'object' ? { kind: 'tcp', host: address.kind === 'tcp' ? address.host : '', port: bound.port } : address;
  return { address: actual, close: () => new Promise((r) => server.close(() => r())) };
}

