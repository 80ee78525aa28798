/**
 * Diffusion schedulers for SD 1.5 (pure math, Float32Array tensors), matching
 * Hugging Face diffusers. Use `createScheduler(name, rawSchedulerConfigJson)`.
 */
import { parseSchedulerConfig, type SchedulerConfig } from './config.js';
import { isSchedulerName, SCHEDULER_NAMES, type Scheduler, type SchedulerName } from './common.js';
import { DDIMScheduler } from './ddim.js';
import { DPMSolverMultistepScheduler } from './dpmpp-2m-karras.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
import { EulerDiscreteScheduler } from './euler.js';

export * from './common.js';
export * from './config.js';
export { computeAlphasCumprod, computeBetas, computeTrainSigmas, karrasSigmas, sigmaToT, spacedTimesteps } from './schedule.js';
export { DDIMScheduler } from './ddim.js';
export { DPMSolverMultistepScheduler } from './dpmpp-2m-karras.js';
export { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
export { EulerDiscreteScheduler } from './euler.js';

/**
 * Build a scheduler. `config` is either the raw `scheduler_config.json` object
 * (validated with zod, defaults = SD 1.5) or an already parsed SchedulerConfig.
 */
export function createScheduler(name: SchedulerName, config: unknown = {}): Scheduler {
  if (!isSchedulerName(name)) {
    throw new Error(`Unknown scheduler "${String(name)}"; expected one of ${SCHEDULER_NAMES.join(', ')}`);
  }
  const parsed: SchedulerConfig = parseSchedulerConfig(config);
  switch (name) {
    case 'EULER_A':
      return new EulerAncestralDiscreteScheduler(parsed);
    case 'EULER':
      return new EulerDiscreteScheduler(parsed);
    case 'DDIM':
      return new DDIMScheduler(parsed);
    case 'DPMPP_2M_KARRAS':
      return new DPMSolverMultistepScheduler(parsed);
  }
}
