/**
 * The limits a primary puts on its connections (wire-protocol §9.7): how long a handshake may
 * take, and how many connections it holds open. zc.zrs has neither; 0 turns either off.
 * @module
 */
import type { Logger } from '../net/log.ts';

/** Time from accepting a connection to receiving its start tid (WIRE-LIMIT-1, WIRE-LIMIT-2). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;
/** Connections held open at once, those in the handshake included (WIRE-LIMIT-3). */
export const DEFAULT_MAX_CONNECTIONS = 100;
/** Connections closed at the bound are logged at most once per this period (WIRE-LIMIT-4). */
const DROP_LOG_PERIOD_MS = 10_000;

/** Logged when a connection sent no complete handshake in time. */
export const ERR_HANDSHAKE_TIMEOUT = 'ERR_HANDSHAKE_TIMEOUT';
/** Logged when connections were closed because the primary held its maximum. */
export const ERR_CONNECTION_LIMIT = 'ERR_CONNECTION_LIMIT';

/**
 * Logs the connections closed at the bound: the first of a burst at once, then, every period
 * in which more came, one line with their count and the last peer.
 */
export class DropLog {
  private count = 0;
  private lastPeer = '';
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly logger: Logger,
    private readonly max: number,
    private readonly periodMs = DROP_LOG_PERIOD_MS,
  ) {}

  /** A connection from `peer` was closed at the bound. */
  dropped(peer: string): void {
    this.count++;
    this.lastPeer = peer;
    if (!this.timer) this.flush();
  }

  /** Writes the line owed, if any; a period without lines follows each line. */
  private flush(): void {
    this.timer = null;
    if (this.count === 0) return;
    this.write();
    this.timer = setTimeout(() => this.flush(), this.periodMs).unref();
  }

  private write(): void {
    this.logger.log('warn', 'connection-limit', `${this.count} new connection(s) closed: ${this.max} connections open`, {
      peer: this.lastPeer,
      closed: this.count,
      code: ERR_CONNECTION_LIMIT,
      requirement: 'WIRE-LIMIT-3',
    });
    this.count = 0;
  }

  /** Writes the line owed, if any, and stops. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.count > 0) this.write();
  }
}
