/**
 * Common scheduler interface and elementwise helpers. Tensors are flat
 * Float32Arrays (latents, shape known to the caller).
 */
import type { SchedulerConfig } from './config.js';

/** The schedulers implemented here (the API's names; the local engine checks they cover its list). */
export const SCHEDULER_NAMES = ['EULER_A', 'EULER', 'DDIM', 'DPMPP_2M_KARRAS'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

export function isSchedulerName(value: unknown): value is SchedulerName {
  return typeof value === 'string' && (SCHEDULER_NAMES as readonly string[]).includes(value);
}

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
  /** Model evaluations per step (1 for all schedulers here). */
  readonly order: number;
  /** UNet timestep values, descending, as diffusers gives them (may be fractional). */
  readonly timesteps: readonly number[];
  /** VE sigma per step (sqrt((1-a)/a)); length timesteps.length + 1, the last is the final sigma. */
  readonly sigmas: readonly number[];
  /** Std-dev of the initial latent noise: latents = initNoiseSigma * randn. */
  readonly initNoiseSigma: number;
  readonly numInferenceSteps: number;
  setTimesteps(numInferenceSteps: number): void;
  /** Input to feed the UNet at `stepIndex` (a new array; the argument is not modified). */
  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array;
  /** One denoising step from `timesteps[stepIndex]` to the next; returns a new array. */
  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, rng?: NoiseSource): Float32Array;
  /**
   * image2image: calls setTimesteps(numInferenceSteps) then returns the tail to run,
   * like diffusers' StableDiffusionImg2ImgPipeline.get_timesteps.
   */
  timestepsForStrength(numInferenceSteps: number, strength: number): StrengthTimesteps;
  /** Noise `original` to the noise level of `timesteps[stepIndex]`. */
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

/** timestepsForStrength for every scheduler: set the steps, then the tail that strength keeps. */
export function strengthTail(scheduler: Scheduler, numInferenceSteps: number, strength: number): StrengthTimesteps {
  scheduler.setTimesteps(numInferenceSteps);
  const startIndex = strengthStartIndex(numInferenceSteps, strength, scheduler.order);
  return { timesteps: scheduler.timesteps.slice(startIndex), startIndex };
}
