/**
 * Shared machinery for the k-diffusion style (VE-sigma) schedulers of diffusers:
 * EulerDiscrete, EulerAncestralDiscrete, LMSDiscrete and HeunDiscrete. The sample lives in
 * sigma space (x = x0 + sigma * eps); the UNet sees x / sqrt(sigma^2 + 1).
 */
import type { SchedulerConfig } from './config.js';
import {
  assertSameLength,
  assertStepIndex,
  type NoiseSource,
  type Scheduler,
  type SchedulerName,
  schedulerStepNumber,
  type StrengthTimesteps,
  strengthTail,
} from './common.js';
import { computeAlphasCumprod, computeTrainSigmas, interp, karrasSigmas, linspace, sigmaToT, spacedTimesteps } from './schedule.js';

const f32 = Math.fround;

export abstract class SigmaSchedulerBase implements Scheduler {
  abstract readonly name: SchedulerName;
  readonly order: number = 1;
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  /** Training sigmas, index = timestep (ascending). */
  readonly trainSigmas: Float64Array;
  timesteps: number[];
  sigmas: number[];
  numInferenceSteps = 0;
  protected readonly logSigmas: Float64Array;
  private readonly trainTimesteps: Float64Array;
  /** Index of the last step() call (-1: none since setTimesteps); a call at another index starts a new run. */
  protected lastStepIndex = -1;

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = computeAlphasCumprod(config);
    this.trainSigmas = computeTrainSigmas(this.alphasCumprod);
    this.logSigmas = this.trainSigmas.map(Math.log);
    this.trainTimesteps = Float64Array.from({ length: config.num_train_timesteps }, (_, i) => i);
    // State after diffusers' __init__ (full training schedule), before setTimesteps.
    const N = config.num_train_timesteps;
    this.timesteps = linspace(0, N - 1, N).reverse();
    this.sigmas = [...Array.from(this.trainSigmas).reverse(), 0];
  }

  get initNoiseSigma(): number {
    const maxSigma = Math.max(...this.sigmas);
    if (this.config.timestep_spacing === 'linspace' || this.config.timestep_spacing === 'trailing') {
      return maxSigma;
    }
    return f32(Math.sqrt(maxSigma * maxSigma + 1));
  }

  /**
   * The class's (timesteps, sigmas) before the final sigma is appended: spaced timesteps, the
   * training sigmas interpolated at them, and with use_karras_sigmas the Karras sigmas between
   * those ends with their timesteps found by sigma -> t interpolation.
   */
  protected baseSchedule(numInferenceSteps: number, roundKarrasTimesteps = true): { timesteps: number[]; sigmas: number[] } {
    let timesteps = spacedTimesteps(this.config, numInferenceSteps, false);
    let sigmas = timesteps.map((t) => interp(t, this.trainTimesteps, this.trainSigmas));
    if (this.config.use_karras_sigmas) {
      const sigmaMin = this.config.sigma_min ?? sigmas[sigmas.length - 1]!;
      const sigmaMax = this.config.sigma_max ?? sigmas[0]!;
      sigmas = karrasSigmas(sigmaMin, sigmaMax, numInferenceSteps);
      timesteps = sigmas.map((s) => (roundKarrasTimesteps ? f32(sigmaToT(s, this.logSigmas)) : sigmaToT(s, this.logSigmas)));
    }
    return { timesteps, sigmas };
  }

  setTimesteps(numInferenceSteps: number): void {
    const { timesteps, sigmas } = this.baseSchedule(numInferenceSteps);
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, 0].map(f32);
    this.numInferenceSteps = numInferenceSteps;
    this.resetHistory();
  }

  /** Forget the history of the previous steps (a new run). */
  protected resetHistory(): void {
    this.lastStepIndex = -1;
  }

  /** Checks the arguments; starts a new run when the index does not follow the previous call. */
  protected beginStep(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): void {
    assertStepIndex(stepIndex, this.timesteps.length);
    assertSameLength(modelOutput, sample, 'step');
    if (stepIndex !== this.lastStepIndex + 1 || stepIndex === 0) this.resetHistory();
    this.lastStepIndex = stepIndex;
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    const sigma = this.sigmas[stepIndex]!;
    const k = Math.sqrt(sigma * sigma + 1);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) out[i] = sample[i]! / k;
    return out;
  }

  /** x0 prediction from the model output, in sigma space (diffusers' pred_original_sample). */
  protected predictOriginal(modelOutput: number, sample: number, sigma: number): number {
    if (this.config.prediction_type === 'epsilon') return sample - sigma * modelOutput;
    // v_prediction: c_out * v + c_skip * x
    return modelOutput * (-sigma / Math.sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1);
  }

  abstract step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, rng?: NoiseSource): Float32Array;

  stepNumber(stepIndex: number, startIndex = 0): number {
    return schedulerStepNumber(this, stepIndex, startIndex);
  }

  timestepsForStrength(numInferenceSteps: number, strength: number): StrengthTimesteps {
    return strengthTail(this, numInferenceSteps, strength);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    assertSameLength(original, noise, 'addNoise');
    assertStepIndex(stepIndex, this.timesteps.length);
    const sigma = this.sigmas[stepIndex]!;
    const out = new Float32Array(original.length);
    for (let i = 0; i < original.length; i++) out[i] = original[i]! + noise[i]! * sigma;
    return out;
  }
}
