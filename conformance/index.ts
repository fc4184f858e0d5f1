/**
 * The ZRS conformance harness: IUT descriptors and processes, the fake peers, the fault proxy
 * and the verdict. `zrs-conformance` (conformance/cli.ts) runs the suite; these are its
 * building blocks, for writing further cases.
 * @module
 */
export * from './checks.ts';
export * from './iut/descriptor.ts';
export * from './iut/node.ts';
export * from './peers/fake-secondary.ts';
export * from './peers/fake-primary.ts';
export type { ReceivedTransaction, StreamFault } from './peers/received-stream.ts';
export * from './proxy/fault-proxy.ts';
export * from './report/verdict.ts';
export type { Requirement } from '../spec/tools/requirements.ts';
