// The vocabulary of StreamingTrainingJob status: phases, condition types and reasons, in one place
// (kubebuilder keeps them as constants beside the API types). Condition types are adjectives or
// past participles; reasons are CamelCase, as metav1.Condition requires.

export const PHASES = ['Pending', 'Planned', 'Running', 'Succeeded', 'Failed', 'Suspended'] as const;
export type Phase = (typeof PHASES)[number];

export const ConditionType = {
  /** A GPU class and tile size were chosen (False: none can hold the job; see the reason). */
  Planned: 'Planned',
  /** The trainer pod runs and reports progress. */
  Running: 'Running',
  /** Training finished; status.result holds the final metrics. Terminal. */
  Succeeded: 'Succeeded',
  /** The job will not be retried. Terminal. */
  Failed: 'Failed',
  /** spec.runPolicy.suspend is true (for example, held by Kueue); no pod runs. */
  Suspended: 'Suspended',
  /**
   * The current attempt runs the current spec (False: a spec edit waits for the next attempt; the
   * message names the fields). Present while a trainer Job exists.
   */
  SpecApplied: 'SpecApplied',
  /**
   * The job is queued (spec.runPolicy.queueName or a kueue.x-k8s.io/queue-name label) and its Kueue
   * LocalQueue exists (False: Kueue is not installed or the queue does not exist, so nothing would
   * ever admit the job). Present only for a queued job that has not finished.
   */
  QueueAvailable: 'QueueAvailable',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

export const ConditionReason = {
  // Planned
  PlanFound: 'PlanFound',
  NoGPUWithSufficientMemory: 'NoGPUWithSufficientMemory',
  NoGPUNodes: 'NoGPUNodes',
  TileSizeReduced: 'TileSizeReduced',
  /** A spec edit reached a job whose trainer was not running: a new attempt was planned with it. */
  SpecChangeApplied: 'SpecChangeApplied',
  /**
   * Data-parallel jobs: a rank did not meet its peers within the peer timeout, or lost one (its exit
   * code 6); all ranks restart from the last checkpoint in a new attempt, counted against
   * backoffLimit. Also the Failed reason when that was the last failure backoffLimit allowed.
   */
  PeersUnavailable: 'PeersUnavailable',
  /** Data-parallel jobs: a rank failed otherwise; all ranks restart from the last checkpoint. */
  RankFailed: 'RankFailed',
  // Running
  TrainerStarting: 'TrainerStarting',
  TrainerRunning: 'TrainerRunning',
  TrainerRestarted: 'TrainerRestarted',
  // Succeeded
  TrainingCompleted: 'TrainingCompleted',
  // Failed
  OutOfMemory: 'OutOfMemory',
  TileReductionsExhausted: 'TileReductionsExhausted',
  BackoffLimitExceeded: 'BackoffLimitExceeded',
  DeadlineExceeded: 'DeadlineExceeded',
  TrainerFailed: 'TrainerFailed',
  InvalidSpec: 'InvalidSpec',
  /** The tenant policy refuses the spec (an image, a volume kind or a hostPath the admin does not allow). */
  PolicyViolation: 'PolicyViolation',
  /** The trainer could not write a checkpoint to a full volume (its exit code 4); the previous one is kept. */
  CheckpointVolumeFull: 'CheckpointVolumeFull',
  /** The trainer found no data where spec.data says (its exit code 5): a missing manifest or data root. */
  DataNotFound: 'DataNotFound',
  // Suspended
  Suspended: 'Suspended',
  Resumed: 'Resumed',
  // QueueAvailable
  LocalQueueFound: 'LocalQueueFound',
  LocalQueueNotFound: 'LocalQueueNotFound',
  /** The API server serves no kueue.x-k8s.io group (API discovery). */
  KueueNotInstalled: 'KueueNotInstalled',
  /** The queue could not be read (e.g. the operator may not get localqueues); the message says why. */
  QueueCheckFailed: 'QueueCheckFailed',
  // SpecApplied
  SpecCurrent: 'SpecCurrent',
  /** The trainer runs an earlier spec; the edit applies at the next attempt. */
  SpecChangePending: 'SpecChangePending',
} as const;
export type ConditionReason = (typeof ConditionReason)[keyof typeof ConditionReason];
