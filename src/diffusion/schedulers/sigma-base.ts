/**
 * Shared machinery for the k-diffusion style (VE-sigma) schedulers:
 * EulerDiscreteScheduler and EulerAncestralDiscreteScheduler in diffusers.
 * The sample lives in sigma space (x = x0 + sigma * eps); the UNet sees
 * x / sqrt(sigma^2 + 1).
 */
import type { SchedulerConfig } from './config.js';
import {
  assertSameLength,
  assertStepIndex,
  type NoiseSource,
  type Scheduler,
  type SchedulerName,
  type StrengthTimesteps,
  strengthTail,
} from './common.js';
import { computeAlphasCumprod, computeTrainSigmas, interp, karrasSigmas, linspace, sigmaToT, spacedTimesteps } from './schedule.js';

export interface SigmaSchedulerOptions {
  /** diffusers `use_karras_sigmas` (false for SD 1.5's Euler / Euler a). */
  useKarrasSigmas?: boolean;
}

export abstract class SigmaSchedulerBase implements Scheduler {
  abstract readonly name: SchedulerName;
  readonly order = 1;
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  /** Training sigmas, index = timestep (ascending). */
  readonly trainSigmas: Float64Array;
  readonly useKarrasSigmas: boolean;
  timesteps: number[];
  sigmas: number[];
  numInferenceSteps = 0;
  private readonly logSigmas: Float64Array;
  private readonly trainTimesteps: Float64Array;

  constructor(config: SchedulerConfig, options: SigmaSchedulerOptions = {}) {
    this.config = config;
    this.useKarrasSigmas = options.useKarrasSigmas ?? false;
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
    return Math.sqrt(maxSigma * maxSigma + 1);
  }

  setTimesteps(numInferenceSteps: number): void {
    let timesteps = spacedTimesteps(this.config, numInferenceSteps, false);
    let sigmas = timesteps.map((t) => interp(t, this.trainTimesteps, this.trainSigmas));
    if (this.useKarrasSigmas) {
      sigmas = karrasSigmas(sigmas[sigmas.length - 1]!, sigmas[0]!, numInferenceSteps);
      timesteps = sigmas.map((s) => Math.fround(sigmaToT(s, this.logSigmas)));
    }
    this.timesteps = timesteps;
    this.sigmas = [...sigmas.map((s) => Math.fround(s)), 0];
    this.numInferenceSteps = numInferenceSteps;
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    const sigma = this.sigmas[stepIndex]!;
    const k = 1 / Math.sqrt(sigma * sigma + 1);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) out[i] = sample[i]! * k;
    return out;
  }

  /** x0 prediction from the model output, in sigma space (diffusers' pred_original_sample). */
  protected predictOriginal(modelOutput: number, sample: number, sigma: number): number {
    if (this.config.prediction_type === 'epsilon') return sample - sigma * modelOutput;
    // v_prediction: c_out * v + c_skip * x
    return modelOutput * (-sigma / Math.sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1);
  }

  abstract step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, rng?: NoiseSource): Float32Array;

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
