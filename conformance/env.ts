/** Paths and environment variables shared by the runner and the cases. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REFERENCE_IUT = path.join(REPO_ROOT, 'conformance/iut/reference.json');
export const FIXTURES = path.join(REPO_ROOT, 'fixtures/real');

/** The runner passes the descriptors, profile and seed to the cases through these variables. */
export const ENV = {
  primary: 'ZRS_IUT_PRIMARY',
  secondary: 'ZRS_IUT_SECONDARY',
  profile: 'ZRS_CONFORMANCE_PROFILE',
  seed: 'ZRS_CONFORMANCE_SEED',
  /** fast-check path of a failure to replay (with the same seed). */
  replay: 'ZRS_CONFORMANCE_REPLAY',
  reportDir: 'ZRS_CONFORMANCE_REPORT_DIR',
  /** Seconds a property case may search and shrink, replacing the profile's budget (tests of the harness itself). */
  propertyBudget: 'ZRS_CONFORMANCE_PROPERTY_BUDGET',
} as const;
