// Names of the StreamingTrainingJob API: group, version, kind, resource.

export const GROUP = 'tilestream.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}` as const;
export const KIND = 'StreamingTrainingJob';
export const LIST_KIND = 'StreamingTrainingJobList';
export const PLURAL = 'streamingtrainingjobs';
export const SINGULAR = 'streamingtrainingjob';
export const SHORT_NAMES = ['stj'] as const;
export const CRD_NAME = `${PLURAL}.${GROUP}`;
/** spec.runPolicy.managedBy of a job the tilestream operator runs (also what unset means). */
export const MANAGED_BY_OPERATOR = 'tilestream.io/operator';
