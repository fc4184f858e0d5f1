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
export { loadPickle, readPickle, type PickleOptions, type PickleRead } from './pickle/decoder.ts';
export * from './pickle/limits.ts';
export * from './filestorage/records.ts';
export * from './filestorage/reader.ts';
export * from './filestorage/follower.ts';
export * from './filestorage/writer.ts';
export * from './filestorage/lock.ts';
export * from './filestorage/failure.ts';
export * from './filestorage/checker.ts';
export { dumpExtension, dumpPickle } from './pickle/encoder.ts';
export * from './pickle/json.ts';
export * from './filestorage/content.ts';
export * from './filestorage/blobs.ts';
export * from './filestorage/pack.ts';
export * from './filestorage/references.ts';
export * from './net/address.ts';
export * from './net/log.ts';
export type { NodeStatus, PeerStatus } from './net/status.ts';
export * from './primary/frames.ts';
export * from './primary/handshake.ts';
export * from './primary/primary.ts';
export * from './primary/connection.ts';
export * from './primary/signal.ts';
export * from './secondary/applier.ts';
export * from './secondary/secondary.ts';
export * from './secondary/extension-policy.ts';
