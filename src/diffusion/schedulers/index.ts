/**
 * Diffusion schedulers for SD 1.5 (pure math, Float32Array tensors), computing what Hugging Face
 * diffusers v0.30.3's scheduler classes compute. Use `createScheduler(name, rawSchedulerConfigJson)`.
 */
import { parseSchedulerConfig, SD15_SCHEDULER_CONFIG } from './config.js';
import { isSchedulerName, SCHEDULER_NAMES, type Scheduler, type SchedulerName } from './common.js';
import { DDIMScheduler } from './ddim.js';
import { DPMSolverMultistepScheduler } from './dpm-solver-multistep.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
import { EulerDiscreteScheduler } from './euler.js';
import { HeunDiscreteScheduler } from './heun.js';
import { LMSDiscreteScheduler } from './lms.js';
import { PNDMScheduler } from './pndm.js';
import { UniPCMultistepScheduler } from './unipc.js';

export * from './common.js';
export * from './config.js';
export {
  computeAlphasCumprod,
  computeBetas,
  computeTrainSigmas,
  karrasSigmas,
  multistepTimesteps,
  sigmaToT,
  spacedTimesteps,
} from './schedule.js';
export { DDIMScheduler } from './ddim.js';
export { DPMSolverMultistepScheduler } from './dpm-solver-multistep.js';
export { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
export { EulerDiscreteScheduler } from './euler.js';
export { HeunDiscreteScheduler } from './heun.js';
export { LMSDiscreteScheduler } from './lms.js';
export { PNDMScheduler } from './pndm.js';
export { UniPCMultistepScheduler } from './unipc.js';

/**
 * Build a scheduler from the checkpoint's raw `scheduler_config.json` object, as diffusers'
 * `SchedulerClass.from_config(config)` builds it (see config.ts); with no config, SD 1.5's.
 */
export function createScheduler(name: SchedulerName, config: unknown = SD15_SCHEDULER_CONFIG): Scheduler {
  if (!isSchedulerName(name)) {
    throw new Error(`Unknown scheduler "${String(name)}"; expected one of ${SCHEDULER_NAMES.join(', ')}`);
  }
  const parsed = parseSchedulerConfig(config, name);
  switch (name) {
    case 'EULER_A':
      return new EulerAncestralDiscreteScheduler(parsed);
    case 'EULER':
      return new EulerDiscreteScheduler(parsed);
    case 'DDIM':
      return new DDIMScheduler(parsed);
    case 'DPMPP_2M_KARRAS':
    case 'DPMPP_2M':
      return new DPMSolverMultistepScheduler(parsed, name);
    case 'PNDM':
      return new PNDMScheduler(parsed);
    case 'LMS':
      return new LMSDiscreteScheduler(parsed);
    case 'HEUN':
      return new HeunDiscreteScheduler(parsed);
    case 'UNIPC':
      return new UniPCMultistepScheduler(parsed);
  }
}
