/**
 * The running checksum of a replication stream: MD5 seeded with the 8-byte start tid of the
 * handshake, then fed every payload the primary sends, in order (control-message pickles,
 * data frames, blob chunks, and the commit messages themselves), never length prefixes.
 * A commit message carries the digest of everything before it on the connection.
 * @module
 */
import { createHash, type Hash } from 'node:crypto';

/** One connection's running MD5. */
export class RunningChecksum {
  private readonly hash: Hash;

  /** @param startTid the 8-byte start tid of the handshake, which seeds the hash. */
  constructor(startTid: Uint8Array) {
    this.hash = createHash('md5').update(startTid);
  }

  /** Feeds one payload (an empty one changes nothing). */
  update(payload: Uint8Array): void {
    this.hash.update(payload);
  }

  /** The digest of everything fed so far; hashing goes on afterwards. */
  digest(): Buffer {
    return this.hash.copy().digest();
  }
}
