/**
 * PNDMScheduler (diffusers): pseudo numerical methods for diffusion models, in VP space (no
 * input scaling). With skip_prk_steps (SD 1.5's config) it is the PLMS sampler: the timesteps
 * are [t0, t1, t1, t2, ..., t(n-1)] (n + 1 entries; the second evaluation at t1 redoes the first
 * step with the mean of two noise estimates), then linear multistep of order up to 4 on the
 * noise estimates. Without skip_prk_steps the first three steps are pseudo Runge-Kutta (four
 * evaluations each, at t, t - ratio/2, t - ratio/2, t - ratio), then PLMS of order 4.
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

const PNDM_ORDER = 4;

export class PNDMScheduler implements Scheduler {
  readonly name = 'PNDM' as const;
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  readonly finalAlphaCumprod: number;
  timesteps: number[] = [];
  sigmas: number[] = [];
  numInferenceSteps = 0;
  /** Number of leading pseudo Runge-Kutta entries in `timesteps` (0 with skip_prk_steps). */
  prkCount = 0;
  private ets: Float32Array[] = [];
  private counter = 0;
  private curModelOutput: Float32Array | null = null;
  private curSample: Float32Array | null = null;
  private lastStepIndex = -1;

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = computeAlphasCumprod(config);
    this.finalAlphaCumprod = config.set_alpha_to_one ? 1.0 : this.alphasCumprod[0]!;
  }

  setTimesteps(numInferenceSteps: number): void {
    // ascending, as diffusers' _timesteps
    const base = spacedTimesteps(this.config, numInferenceSteps, true).reverse();
    this.numInferenceSteps = numInferenceSteps;
    let prk: number[] = [];
    let plms: number[];
    if (this.config.skip_prk_steps) {
      plms = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      if (numInferenceSteps < PNDM_ORDER) {
        throw new Error(`PNDM without skip_prk_steps needs at least ${PNDM_ORDER} steps, got ${numInferenceSteps}`);
      }
      const half = Math.floor(Math.floor(this.config.num_train_timesteps / numInferenceSteps) / 2);
      // np.array(_timesteps[-4:]).repeat(2) + np.tile([0, half], 4)
      const rep = base.slice(-PNDM_ORDER).flatMap((t) => [t, t + half]);
      // (prk[:-1].repeat(2)[1:-1])[::-1]
      prk = rep
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1)
        .reverse();
      plms = base.slice(0, -3).reverse();
    }
    this.prkCount = prk.length;
    this.timesteps = [...prk, ...plms];
    const veSigma = (a: number): number => Math.sqrt((1 - a) / a);
    this.sigmas = [...this.timesteps.map((t) => veSigma(this.alphaAt(t))), veSigma(this.finalAlphaCumprod)];
    this.resetState();
  }

  private resetState(): void {
    this.ets = [];
    this.counter = 0;
    this.curModelOutput = null;
    this.curSample = null;
    this.lastStepIndex = -1;
  }

  private alphaAt(t: number): number {
    const a = this.alphasCumprod[t];
    if (a === undefined) throw new Error(`PNDM: timestep ${t} out of range`);
    return a;
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    return Float32Array.from(sample);
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, _rng?: NoiseSource): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    assertSameLength(modelOutput, sample, 'step');
    // diffusers keeps a counter from set_timesteps; a run starting anywhere starts it at 0.
    if (stepIndex !== this.lastStepIndex + 1 || stepIndex === 0) this.resetState();
    this.lastStepIndex = stepIndex;
    const out =
      this.counter < this.prkCount && !this.config.skip_prk_steps
        ? this.stepPrk(modelOutput, stepIndex, sample)
        : this.stepPlms(modelOutput, stepIndex, sample);
    this.counter++;
    return out;
  }

  private get ratio(): number {
    return Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
  }

  private stepPrk(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(this.ratio / 2);
    const prevTimestep = this.timesteps[stepIndex]! - diffToPrev;
    const timestep = this.timesteps[Math.floor(this.counter / 4) * 4]!;
    const n = sample.length;
    let output = modelOutput;
    const phase = this.counter % 4;
    if (phase === 0) {
      this.curModelOutput = new Float32Array(n);
      for (let i = 0; i < n; i++) this.curModelOutput[i] = this.curModelOutput[i]! + (1 / 6) * modelOutput[i]!;
      this.ets.push(modelOutput);
      this.curSample = sample;
    } else if (phase === 1 || phase === 2) {
      const acc = this.curModelOutput!;
      for (let i = 0; i < n; i++) acc[i] = acc[i]! + (1 / 3) * modelOutput[i]!;
    } else {
      const acc = this.curModelOutput!;
      output = new Float32Array(n);
      for (let i = 0; i < n; i++) output[i] = acc[i]! + (1 / 6) * modelOutput[i]!;
      this.curModelOutput = null;
    }
    const cur = this.curSample ?? sample;
    return this.prevSample(cur, timestep, prevTimestep, output);
  }

  private stepPlms(modelOutput: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    let timestep = this.timesteps[stepIndex]!;
    let prevTimestep = timestep - this.ratio;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      prevTimestep = timestep;
      timestep = timestep + this.ratio;
    }
    const e = this.ets;
    const L = e.length;
    const n = sample.length;
    let x = sample;
    const combined = new Float32Array(n);
    if (L === 1 && this.counter === 0) {
      combined.set(modelOutput);
      this.curSample = sample;
    } else if (L === 1 && this.counter === 1) {
      for (let i = 0; i < n; i++) combined[i] = (modelOutput[i]! + e[0]![i]!) / 2;
      x = this.curSample!;
      this.curSample = null;
    } else if (L === 2) {
      for (let i = 0; i < n; i++) combined[i] = (3 * e[1]![i]! - e[0]![i]!) / 2;
    } else if (L === 3) {
      for (let i = 0; i < n; i++) combined[i] = (23 * e[2]![i]! - 16 * e[1]![i]! + 5 * e[0]![i]!) / 12;
    } else {
      for (let i = 0; i < n; i++) combined[i] = (1 / 24) * (55 * e[3]![i]! - 59 * e[2]![i]! + 37 * e[1]![i]! - 9 * e[0]![i]!);
    }
    return this.prevSample(x, timestep, prevTimestep, combined);
  }

  /** diffusers' _get_prev_sample (formula (9) of the PNDM paper). */
  private prevSample(sample: Float32Array, timestep: number, prevTimestep: number, modelOutput: Float32Array): Float32Array {
    const a = this.alphaAt(timestep);
    const aPrev = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
    const b = 1 - a;
    const bPrev = 1 - aPrev;
    const sampleCoeff = Math.sqrt(aPrev / a);
    const denom = a * Math.sqrt(bPrev) + Math.sqrt(a * b * aPrev);
    const k = (aPrev - a) / denom;
    const v = this.config.prediction_type === 'v_prediction';
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(b);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const eps = v ? sa * modelOutput[i]! + sb * sample[i]! : modelOutput[i]!;
      out[i] = sampleCoeff * sample[i]! - k * eps;
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
