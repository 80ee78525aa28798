/**
 * Common scheduler interface and elementwise helpers. Tensors are flat
 * Float32Arrays (latents, shape known to the caller).
 */
import type { SchedulerConfig } from './config.js';

export { isSchedulerName, SCHEDULER_NAMES, type SchedulerName } from './names.js';
import type { SchedulerName } from './names.js';

/** Source of standard-normal noise (see ../noise/). */
export interface NoiseSource {
  randn(count: number): Float32Array;
}

export interface StrengthTimesteps {
  /** The timesteps still to run (a suffix of `scheduler.timesteps`). */
  timesteps: number[];
  /** Index into `scheduler.timesteps` of the first step to run. */
  startIndex: number;
}

export interface Scheduler {
  readonly name: SchedulerName;
  readonly config: SchedulerConfig;
  /** diffusers' `scheduler.order`: model evaluations per user-facing step (2 for HEUN, else 1). */
  readonly order: number;
  /**
   * Every UNet timestep value diffusers iterates, in order (may be fractional): n entries for
   * most schedulers, 2n - 1 for HEUN, n + 1 for PNDM with skip_prk_steps (n + 9 without).
   * `step` and `scaleModelInput` are called once per entry, in this order.
   */
  readonly timesteps: readonly number[];
  /**
   * VE sigma (sqrt((1-a)/a)) of the UNet input at each entry of `timesteps`, then the final
   * sigma: length timesteps.length + 1. For the k-diffusion schedulers (Euler, LMS, Heun) and the
   * multistep solvers this is diffusers' `scheduler.sigmas`; DDIM and PNDM have none there, and
   * get the one of alphas_cumprod[timesteps[i]] (the last: of the final alpha).
   */
  readonly sigmas: readonly number[];
  /** Std-dev of the initial latent noise: latents = initNoiseSigma * randn. */
  readonly initNoiseSigma: number;
  readonly numInferenceSteps: number;
  setTimesteps(numInferenceSteps: number): void;
  /** Input to feed the UNet at `stepIndex` (a new array; the argument is not modified). */
  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array;
  /**
   * One model evaluation's update at `timesteps[stepIndex]`; returns a new array. Schedulers with
   * history (PNDM, LMS, HEUN, the multistep solvers) keep it internally: call step once per entry,
   * in order, from the first index of the run; setTimesteps resets it. Draws noise with
   * `rng.randn(sample.length)` exactly where diffusers draws it (EULER_A and EULER: once per call,
   * EULER's draw is unused with s_churn 0 but keeps the generator's stream in step).
   */
  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, rng?: NoiseSource): Float32Array;
  /**
   * The user-facing step count (what diffusers' progress bar shows) once `timesteps[stepIndex]`
   * has been evaluated, in a run that began at `startIndex` (0, or `timestepsForStrength`'s
   * startIndex): 1..total, where total = stepNumber(timesteps.length - 1, startIndex) is the
   * run's step count (n, or n - t_start for image2image). HEUN's first-order evaluations do not
   * complete a step (stepNumber(2k) = k, the last one excepted); PNDM's warm-up evaluation
   * (its first, with skip_prk_steps) gives 0.
   */
  stepNumber(stepIndex: number, startIndex?: number): number;
  /**
   * image2image: calls setTimesteps(numInferenceSteps) then returns the tail to run,
   * like diffusers' StableDiffusionImg2ImgPipeline.get_timesteps.
   */
  timestepsForStrength(numInferenceSteps: number, strength: number): StrengthTimesteps;
  /**
   * Noise `original` to the noise level of `timesteps[stepIndex]`: diffusers' add_noise for that
   * entry (for the schedulers with set_begin_index, image2image's `set_begin_index(t_start * order)`
   * then add_noise; for inpainting after step i, the entry i + 1).
   */
  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array;
}

/** diffusers get_timesteps: init_timestep = min(int(n * strength), n); t_start = max(n - init_timestep, 0). */
export function strengthStartIndex(numInferenceSteps: number, strength: number, order = 1): number {
  if (!Number.isFinite(strength) || strength < 0 || strength > 1) {
    throw new Error(`strength must be in [0, 1], got ${strength}`);
  }
  const initTimestep = Math.min(Math.trunc(numInferenceSteps * strength), numInferenceSteps);
  const tStart = Math.max(numInferenceSteps - initTimestep, 0);
  return tStart * order;
}

export function assertStepIndex(stepIndex: number, numSteps: number): void {
  if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= numSteps) {
    if (numSteps === 0) throw new Error('setTimesteps() must be called before stepping');
    throw new Error(`stepIndex must be an integer in [0, ${numSteps - 1}], got ${stepIndex}`);
  }
}

export function assertSameLength(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) {
    throw new Error(`${what}: length mismatch (${a.length} vs ${b.length})`);
  }
}

/** out[i] = a * x[i] */
export function scale(x: Float32Array, a: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = a * x[i]!;
  return out;
}

/** out[i] = a * x[i] + b * y[i] */
export function axpby(a: number, x: Float32Array, b: number, y: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = a * x[i]! + b * y[i]!;
  return out;
}

/**
 * diffusers' progress-bar count (StableDiffusionPipeline.__call__): after loop index j of a run of
 * `runLength` evaluations doing `runSteps` steps, with warmup = runLength - runSteps * order, the
 * bar has advanced at every j with j == runLength - 1 or (j + 1 > warmup and (j + 1) % order == 0).
 */
export function progressCount(j: number, runLength: number, runSteps: number, order: number): number {
  if (!Number.isInteger(j) || j < 0 || j >= runLength) {
    throw new Error(`stepIndex must be an integer in the run (0..${runLength - 1} from its start), got ${j}`);
  }
  const warmup = runLength - runSteps * order;
  let count = 0;
  for (let k = 0; k <= j; k++) if (k === runLength - 1 || (k + 1 > warmup && (k + 1) % order === 0)) count++;
  return count;
}

/** Scheduler.stepNumber from the scheduler's state: the run from startIndex does numInferenceSteps - startIndex / order steps. */
export function schedulerStepNumber(s: Scheduler, stepIndex: number, startIndex = 0): number {
  const runSteps = s.numInferenceSteps - Math.floor(startIndex / s.order);
  return progressCount(stepIndex - startIndex, s.timesteps.length - startIndex, runSteps, s.order);
}

/** timestepsForStrength for every scheduler: set the steps, then the tail that strength keeps. */
export function strengthTail(scheduler: Scheduler, numInferenceSteps: number, strength: number): StrengthTimesteps {
  scheduler.setTimesteps(numInferenceSteps);
  const startIndex = strengthStartIndex(numInferenceSteps, strength, scheduler.order);
  return { timesteps: scheduler.timesteps.slice(startIndex), startIndex };
}
