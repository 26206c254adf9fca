// Learning-rate schedules as pure functions of progress, so a resumed run continues exactly.

export type Schedule =
  | { type: 'constant'; warmupEpochs?: number }
  | { type: 'cosine'; warmupEpochs?: number; minFactor?: number }
  | { type: 'step'; warmupEpochs?: number; stepEpochs: number; gamma: number };

/** The learning rate at a fractional epoch `t` (0 ≤ t ≤ epochs). Linear warm-up, then the schedule. */
export function learningRateAt(base: number, schedule: Schedule, t: number, epochs: number): number {
  const warm = schedule.warmupEpochs ?? 0;
  if (warm > 0 && t < warm) return (base * (t + 1e-9)) / warm;
  switch (schedule.type) {
    case 'constant':
      return base;
    case 'cosine': {
      const span = Math.max(epochs - warm, 1e-9);
      const p = Math.min(Math.max((t - warm) / span, 0), 1);
      const min = schedule.minFactor ?? 0;
      return base * (min + ((1 - min) * (1 + Math.cos(Math.PI * p))) / 2);
    }
    case 'step':
      return base * schedule.gamma ** Math.floor((t - warm) / schedule.stepEpochs);
  }
}
