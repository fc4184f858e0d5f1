/**
 * Wakes the streams of a primary when something may have been committed. A stream takes
 * `next()` before it looks at the file and awaits it after, so no commit can slip between.
 * @module
 */
export class CommitSignal {
  private resolve!: () => void;
  private pending: Promise<void>;

  constructor() {
    this.pending = this.fresh();
  }

  private fresh(): Promise<void> {
    return new Promise((r) => (this.resolve = r));
  }

  /** A promise that resolves at the next `notify()`. */
  next(): Promise<void> {
    return this.pending;
  }

  /** Wakes everything waiting. */
  notify(): void {
    const resolve = this.resolve;
    this.pending = this.fresh();
    resolve();
  }
}
