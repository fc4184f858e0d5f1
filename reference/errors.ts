/**
 * Named error classes with stable `code` strings. Every error the reference raises for bad
 * input is a {@link ZrsError}; callers switch on `code`, never on the message text.
 * @module
 */

/** Base class of every error the reference raises for bad input or a protocol violation. */
export class ZrsError extends Error {
  /** Stable machine-readable code, for example `ERR_FRAME_TOO_LARGE`. */
  readonly code: string;
  /** Requirement ID of the spec that the offending input violates, when one applies. */
  readonly requirement: string | undefined;

  constructor(code: string, message: string, requirement?: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.requirement = requirement;
  }
}

/** A frame was malformed or larger than the receiver's limit. */
export class FramingError extends ZrsError {}

/** A pickle could not be decoded under the spec's pickle profile. */
export class PickleError extends ZrsError {
  /** Byte offset inside the pickle where decoding failed. */
  readonly offset: number;

  constructor(code: string, message: string, offset: number, requirement?: string) {
    super(code, `${message} at offset ${offset}`, requirement);
    this.offset = offset;
  }
}

/** A decoded pickle did not have the shape of a ZRS control message. */
export class MessageError extends ZrsError {}

/** A tid or TimeStamp value was invalid. */
export class TimeStampError extends ZrsError {}

/** A FileStorage file or record violated the file format. */
export class FileFormatError extends ZrsError {
  /** File offset of the offending record or field. */
  readonly offset: number;

  constructor(code: string, message: string, offset: number, requirement?: string) {
    super(code, `${message} (at offset ${offset})`, requirement);
    this.offset = offset;
  }
}

/** The lock of a FileStorage file (`FILE.lock`, spec/file-format.md §7.1) could not be taken, or was lost. */
export class FileLockError extends ZrsError {
  /** Pid read from the lock file of a file that another process holds, when it names one. */
  readonly holder: number | null;

  constructor(code: string, message: string, holder: number | null = null, requirement?: string) {
    super(code, message, requirement);
    this.holder = holder;
  }
}
