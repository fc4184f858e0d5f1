/**
 * The ZRS reference implementation: a pure codec for the replication wire protocol and the
 * FileStorage file format, as `spec/` specifies them. Nothing here does I/O.
 * @module
 */
export * from './errors.ts';
export * from './framing.ts';
export * from './checksum.ts';
export * from './messages.ts';
export * from './stream.ts';
export * from './timestamp.ts';
export * from './pickle/values.ts';
export { loadPickle, readPickle, type PickleRead } from './pickle/decoder.ts';
export { dumpPickle } from './pickle/encoder.ts';
export * from './filestorage/records.ts';
