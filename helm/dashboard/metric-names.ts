// The metric names the dashboard reads, in one place. They are what operator/metrics.ts and
// trainer/train/observe.ts register; test/ship/metrics-scrape.test.ts checks every name used in a
// query against the /metrics of a running operator and trainer, so a rename there fails a test here.

/** Exported by the operator (operator/metrics.ts). */
export const OPERATOR = {
  jobs: 'tilestream_jobs',
  tileSize: 'tilestream_job_tile_size_pixels',
  predictedPeak: 'tilestream_job_predicted_peak_memory_bytes',
  savingsRatio: 'tilestream_job_memory_savings_ratio',
  tileReductions: 'tilestream_tile_reductions_total',
  classNodes: 'tilestream_gpu_class_nodes',
  classMemory: 'tilestream_gpu_class_memory_bytes',
  classAllocatable: 'tilestream_gpu_class_allocatable_gpus',
  classFree: 'tilestream_gpu_class_free_gpus',
  buildInfo: 'tilestream_operator_build_info',
  reconcileTotal: 'controller_runtime_reconcile_total',
  reconcileErrors: 'controller_runtime_reconcile_errors_total',
  reconcileTime: 'controller_runtime_reconcile_time_seconds',
  activeWorkers: 'controller_runtime_active_workers',
  queueDepth: 'workqueue_depth',
  queueDuration: 'workqueue_queue_duration_seconds',
  queueRetries: 'workqueue_retries_total',
  leader: 'leader_election_master_status',
  watchErrors: 'tilestream_informer_watch_errors_total',
} as const;

/** Exported by a running trainer (trainer/train/observe.ts), one series set per job. */
export const TRAINER = {
  pixels: 'tilestream_trainer_pixels_processed_total',
  images: 'tilestream_trainer_images_processed_total',
  loss: 'tilestream_trainer_loss',
  epoch: 'tilestream_trainer_epoch',
  progress: 'tilestream_trainer_progress_ratio',
  validationAuc: 'tilestream_trainer_validation_auc',
  lastCheckpoint: 'tilestream_trainer_last_checkpoint_timestamp_seconds',
  peakMemory: 'tilestream_trainer_peak_memory_bytes',
  stepDuration: 'tilestream_trainer_image_step_duration_seconds',
  tileSize: 'tilestream_trainer_tile_size_pixels',
} as const;

/** The controller label value of the operator's controller_runtime_* and workqueue_* series. */
export { CONTROLLER } from '../../operator/metrics.ts';
