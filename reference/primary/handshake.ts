/**
 * What a primary makes of the frames a secondary sends (wire-protocol §4.2, §9.2): the
 * protocol id, the start tid, then only keep-alives. Pure: frames in, decisions out.
 * @module
 */

/** Protocol ids a primary knows. */
export const PROTOCOLS = ['zrs2.0', 'zrs2.1'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** What to do after a frame from the secondary. */
export type HandshakeStep =
  /** The protocol id was accepted; the start tid comes next. */
  | { kind: 'continue'; protocol: Protocol }
  /** The handshake is complete: position after `startTid` and stream. */
  | { kind: 'start'; protocol: Protocol; startTid: Buffer }
  /** An empty frame after the handshake: nothing to do. */
  | { kind: 'keep-alive' }
  /** The handshake failed: close at once, sending nothing (WIRE-HS-12). */
  | { kind: 'refuse'; reason: string; requirement: string }
  /** A frame after the handshake that is not a keep-alive: catch up, then close (WIRE-HS-14). */
  | { kind: 'violation'; reason: string; requirement: string };

/** The handshake state of one connection. */
export class PrimaryHandshake {
  private state: 'id' | 'tid' | 'done' = 'id';
  private protocol: Protocol | null = null;

  /** @param servesBlobs the primary keeps blobs: then `zrs2.0` is refused (WIRE-HS-8). */
  constructor(private readonly servesBlobs: boolean) {}

  /** Interprets one frame payload. */
  frame(payload: Buffer): HandshakeStep {
    switch (this.state) {
      case 'id': {
        const id = payload.toString('latin1');
        if (id === 'zrs2.1' || (id === 'zrs2.0' && !this.servesBlobs)) {
          this.protocol = id;
          this.state = 'tid';
          return { kind: 'continue', protocol: id };
        }
        if (id === 'zrs2.0') {
          return { kind: 'refuse', reason: "Invalid protocol b'zrs2.0'. Require >= 2.1", requirement: 'WIRE-HS-8' };
        }
        return { kind: 'refuse', reason: `Invalid protocol ${JSON.stringify(id)}`, requirement: 'WIRE-HS-9' };
      }
      case 'tid':
        if (payload.length !== 8) {
          return { kind: 'refuse', reason: `Invalid transaction id: ${payload.length} bytes, not 8`, requirement: 'WIRE-HS-10' };
        }
        this.state = 'done';
        return { kind: 'start', protocol: this.protocol!, startTid: Buffer.from(payload) };
      case 'done':
        if (payload.length === 0) return { kind: 'keep-alive' };
        return { kind: 'violation', reason: 'Too many messages', requirement: 'WIRE-HS-14' };
    }
  }

  /** A header announced more than the primary's limit of 8 bytes (WIRE-FRAME-5). */
  tooLarge(length: number): HandshakeStep {
    const reason = `message too large: ${length} bytes, limit 8`;
    return this.state === 'done'
      ? { kind: 'violation', reason, requirement: 'WIRE-FRAME-5' }
      : { kind: 'refuse', reason, requirement: 'WIRE-FRAME-5' };
  }
}
