/**
 * The running checksum of a replication stream: MD5 seeded with the 8-byte start tid of the
 * handshake, then fed every payload the primary sends, in order (control-message pickles,
 * data frames, blob chunks, and the commit messages themselves), never length prefixes.
 * A commit message carries the digest of everything before it on the connection.
 * @module
 */
import { createHash, type Hash } from 'node:crypto';

/** Payloads shorter than this are gathered and hashed together: one call into the hash each. */
const GATHER = 4096;

/** One connection's running MD5. */
export class RunningChecksum {
  private readonly hash: Hash;
  /** Small payloads not yet fed to the hash, in order. */
  private readonly gathered = Buffer.allocUnsafe(4 * GATHER);
  private filled = 0;

  /** @param startTid the 8-byte start tid of the handshake, which seeds the hash. */
  constructor(startTid: Uint8Array) {
    this.hash = createHash('md5').update(startTid);
  }

  /** Feeds one payload (an empty one changes nothing). */
  update(payload: Uint8Array): void {
    if (payload.length >= GATHER) {
      this.flush();
      this.hash.update(payload);
      return;
    }
    if (this.filled + payload.length > this.gathered.length) this.flush();
    this.gathered.set(payload, this.filled);
    this.filled += payload.length;
  }

  /** The digest of everything fed so far; hashing goes on afterwards. */
  digest(): Buffer {
    this.flush();
    return this.hash.copy().digest();
  }

  private flush(): void {
    if (this.filled) this.hash.update(this.gathered.subarray(0, this.filled));
    this.filled = 0;
  }
}
