// The StreamingTrainingJob API: types, names, status vocabulary, local validation, quantities.
// What the trainer and the operator import; nothing here imports them.

export { parseQuantity, QUANTITY_PATTERN, QuantityError } from './quantity.ts';
export * from './v1alpha1/conditions.ts';
export { buildCrd, PRINTER_COLUMNS } from './v1alpha1/crd.ts';
export * from './v1alpha1/names.ts';
export {
  ARCHITECTURES,
  BACKENDS,
  ENV_SOURCES,
  GPUS_PER_POD_MAX,
  LOSSES,
  NAME_MAX_LENGTH,
  OPTIMIZER_DEFAULTS,
  OPTIMIZERS,
  POD_VOLUME_KINDS,
  RANK_PHASES,
  REPLICAS_MAX,
  RESNET_DEFAULT_BODY_END,
  RESNET_STAGES,
  SCHEDULES,
  SMALLCNN_DEFAULT_WIDTH,
  STEP_SCHEDULE_DEFAULT_GAMMA,
  TILE_SIZE_MAX,
  TILE_SIZE_MIN,
  WORLD_SIZE_MAX,
  worldSize,
} from './v1alpha1/schema.ts';
export {
  POLICY_RULES,
  policyFromConfigMap,
  policyViolations,
  type TenantPolicy,
} from './v1alpha1/tenant-policy.ts';
export type * from './v1alpha1/types.ts';
export {
  formatProblems,
  loadJobFile,
  type Problem,
  parseJobText,
  type ValidationResult,
  validateJob,
} from './validate.ts';
