/**
 * DDIMScheduler (diffusers) with eta = 0 (deterministic). The sample lives in
 * VP space: x_t = sqrt(a_t) * x0 + sqrt(1 - a_t) * eps; no input scaling.
 */
import type { SchedulerConfig } from './config.js';
import {
  assertSameLength,
  axpby,
  assertStepIndex,
  type NoiseSource,
  type Scheduler,
  schedulerStepNumber,
  type StrengthTimesteps,
  strengthTail,
} from './common.js';
import { computeAlphasCumprod, spacedTimesteps } from './schedule.js';

export class DDIMScheduler implements Scheduler {
  readonly name = 'DDIM' as const;
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  /** alphas_cumprod used for the step after the last one (prev_timestep < 0). */
  readonly finalAlphaCumprod: number;
  timesteps: number[] = [];
  sigmas: number[] = [];
  numInferenceSteps = 0;

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = computeAlphasCumprod(config);
    this.finalAlphaCumprod = config.set_alpha_to_one ? 1.0 : this.alphasCumprod[0]!;
  }

  setTimesteps(numInferenceSteps: number): void {
    this.timesteps = spacedTimesteps(this.config, numInferenceSteps, true);
    this.numInferenceSteps = numInferenceSteps;
    const veSigma = (a: number): number => Math.sqrt((1 - a) / a);
    this.sigmas = [...this.timesteps.map((t) => veSigma(this.alphaAt(t))), veSigma(this.finalAlphaCumprod)];
  }

  private alphaAt(t: number): number {
    const a = this.alphasCumprod[t];
    if (a === undefined) throw new Error(`DDIM: timestep ${t} out of range`);
    return a;
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    return Float32Array.from(sample);
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, _rng?: NoiseSource): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    assertSameLength(modelOutput, sample, 'step');
    const timestep = this.timesteps[stepIndex]!;
    // diffusers: prev_timestep = timestep - num_train_timesteps // num_inference_steps
    const prevTimestep = timestep - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    const alphaProdT = this.alphaAt(timestep);
    const alphaProdTPrev = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
    const betaProdT = 1 - alphaProdT;
    const sqrtA = Math.sqrt(alphaProdT);
    const sqrtB = Math.sqrt(betaProdT);
    const sqrtAPrev = Math.sqrt(alphaProdTPrev);
    const dirCoef = Math.sqrt(1 - alphaProdTPrev); // eta = 0 -> std_dev_t = 0
    const clip = this.config.clip_sample;
    const range = this.config.clip_sample_range;
    const v = this.config.prediction_type === 'v_prediction';
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      const m = modelOutput[i]!;
      let pred0: number;
      let predEps: number;
      if (v) {
        pred0 = sqrtA * x - sqrtB * m;
        predEps = sqrtA * m + sqrtB * x;
      } else {
        pred0 = (x - sqrtB * m) / sqrtA;
        predEps = m;
      }
      if (clip) {
        // diffusers clamps x0 only; epsilon is kept (use_clipped_model_output = False)
        pred0 = Math.min(Math.max(pred0, -range), range);
      }
      out[i] = sqrtAPrev * pred0 + dirCoef * predEps;
    }
    return out;
  }

  stepNumber(stepIndex: number, startIndex = 0): number {
    return schedulerStepNumber(this, stepIndex, startIndex);
  }

  timestepsForStrength(numInferenceSteps: number, strength: number): StrengthTimesteps {
    return strengthTail(this, numInferenceSteps, strength);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    assertSameLength(original, noise, 'addNoise');
    assertStepIndex(stepIndex, this.timesteps.length);
    const a = this.alphaAt(this.timesteps[stepIndex]!);
    return axpby(Math.sqrt(a), original, Math.sqrt(1 - a), noise);
  }
}
