/**
 * DPMSolverMultistepScheduler (diffusers) as DPM-Solver++ of order 2 ("DPM++ 2M"): algorithm_type
 * 'dpmsolver++', solver_order 2; DPMPP_2M_KARRAS with use_karras_sigmas, DPMPP_2M without. The
 * other keys (solver_type midpoint | heun, lower_order_final, euler_at_final, final_sigmas_type,
 * lambda_min_clipped, timestep_spacing) follow the config. The sample lives in VP space (no
 * input scaling).
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
import {
  assertStepCount,
  computeAlphasCumprod,
  computeTrainSigmas,
  interp,
  karrasSigmas,
  multistepTimesteps,
  roundHalfEven,
  sigmaToAlphaSigmaT,
  sigmaToT,
} from './schedule.js';

const SOLVER_ORDER = 2;

/** lambda = log(alpha_t) - log(sigma_t) of a VE sigma (+inf at sigma 0). */
export function lambdaOfSigma(sigma: number): number {
  const { alphaT, sigmaT } = sigmaToAlphaSigmaT(sigma);
  return Math.log(alphaT) - Math.log(sigmaT);
}

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly name: 'DPMPP_2M_KARRAS' | 'DPMPP_2M';
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  readonly trainSigmas: Float64Array;
  timesteps: number[] = [];
  sigmas: number[] = [];
  numInferenceSteps = 0;
  private readonly logSigmas: Float64Array;
  /** Converted (x0) model outputs of the previous steps, oldest first. */
  private modelOutputs: Float32Array[] = [];
  private lowerOrderNums = 0;
  private lastStepIndex = -1;

  constructor(config: SchedulerConfig, name: 'DPMPP_2M_KARRAS' | 'DPMPP_2M' = config.use_karras_sigmas ? 'DPMPP_2M_KARRAS' : 'DPMPP_2M') {
    this.name = name;
    this.config = config;
    this.alphasCumprod = computeAlphasCumprod(config);
    this.trainSigmas = computeTrainSigmas(this.alphasCumprod);
    this.logSigmas = this.trainSigmas.map(Math.log);
  }

  setTimesteps(numInferenceSteps: number): void {
    assertStepCount(numInferenceSteps, this.config);
    let sigmas: number[];
    let timesteps: number[];
    if (this.config.use_karras_sigmas) {
      // Karras sigmas over the full training range: sigma_max = sigmas[N-1], sigma_min = sigmas[0].
      const sigmaMin = this.trainSigmas[0]!;
      const sigmaMax = this.trainSigmas[this.trainSigmas.length - 1]!;
      sigmas = karrasSigmas(sigmaMin, sigmaMax, numInferenceSteps);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, this.logSigmas)));
    } else {
      // lambda_min_clipped: drop the training timesteps whose lambda is below it (none by default).
      let clipped = 0;
      if (this.config.lambda_min_clipped > -Infinity) {
        for (let t = 0; t < this.alphasCumprod.length; t++) {
          const a = this.alphasCumprod[t]!;
          if (0.5 * Math.log(a) - 0.5 * Math.log(1 - a) < this.config.lambda_min_clipped) clipped++;
        }
      }
      timesteps = multistepTimesteps(this.config, numInferenceSteps, this.config.num_train_timesteps - clipped);
      const train = Float64Array.from({ length: this.trainSigmas.length }, (_, i) => i);
      sigmas = timesteps.map((t) => interp(t, train, this.trainSigmas));
    }
    const last = this.config.final_sigmas_type === 'sigma_min' ? this.trainSigmas[0]! : 0;
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, last].map((s) => Math.fround(s));
    this.numInferenceSteps = timesteps.length;
    this.resetSolverState();
  }

  private resetSolverState(): void {
    this.modelOutputs = [];
    this.lowerOrderNums = 0;
    this.lastStepIndex = -1;
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    return Float32Array.from(sample);
  }

  /** dpmsolver++: convert the model output to a data (x0) prediction. */
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, sigma: number): Float32Array {
    const { alphaT, sigmaT } = sigmaToAlphaSigmaT(sigma);
    const out = new Float32Array(sample.length);
    if (this.config.prediction_type === 'v_prediction') {
      for (let i = 0; i < sample.length; i++) out[i] = alphaT * sample[i]! - sigmaT * modelOutput[i]!;
    } else {
      for (let i = 0; i < sample.length; i++) out[i] = (sample[i]! - sigmaT * modelOutput[i]!) / alphaT;
    }
    return out;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, _rng?: NoiseSource): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    assertSameLength(modelOutput, sample, 'step');
    // A fresh run (or a jump, e.g. img2img starting mid-schedule) starts the multistep history over.
    if (stepIndex !== this.lastStepIndex + 1 || stepIndex === 0) this.resetSolverState();
    this.lastStepIndex = stepIndex;

    const n = this.timesteps.length;
    const c = this.config;
    const lowerOrderFinal = stepIndex === n - 1 && (c.euler_at_final || (c.lower_order_final && n < 15) || c.final_sigmas_type === 'zero');
    // (diffusers' lower_order_second only matters for solver_order 3.)

    const x0 = this.convertModelOutput(modelOutput, sample, this.sigmas[stepIndex]!);
    this.modelOutputs.push(x0);
    if (this.modelOutputs.length > SOLVER_ORDER) this.modelOutputs.shift();

    let prev: Float32Array;
    if (this.lowerOrderNums < 1 || lowerOrderFinal) {
      prev = this.firstOrderUpdate(x0, stepIndex, sample);
    } else {
      prev = this.secondOrderUpdate(stepIndex, sample);
    }
    if (this.lowerOrderNums < SOLVER_ORDER) this.lowerOrderNums++;
    return prev;
  }

  private firstOrderUpdate(x0: Float32Array, stepIndex: number, sample: Float32Array): Float32Array {
    const { alphaT, sigmaT } = sigmaToAlphaSigmaT(this.sigmas[stepIndex + 1]!);
    const { alphaT: alphaS, sigmaT: sigmaS } = sigmaToAlphaSigmaT(this.sigmas[stepIndex]!);
    // x_t = (sigma_t / sigma_s) * x - alpha_t * (exp(-h) - 1) * x0, h = lambda_t - lambda_s.
    // exp(-h) = (sigma_t / alpha_t) * (alpha_s / sigma_s); at sigma_t = 0 it is 0 (h = +inf).
    const ratio = sigmaT / sigmaS;
    const expNegH = (sigmaT / alphaT) * (alphaS / sigmaS);
    const k = -alphaT * (expNegH - 1);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) out[i] = ratio * sample[i]! + k * x0[i]!;
    return out;
  }

  private secondOrderUpdate(stepIndex: number, sample: Float32Array): Float32Array {
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const m1 = this.modelOutputs[this.modelOutputs.length - 2]!;
    const { alphaT, sigmaT } = sigmaToAlphaSigmaT(this.sigmas[stepIndex + 1]!);
    const { sigmaT: sigmaS0 } = sigmaToAlphaSigmaT(this.sigmas[stepIndex]!);
    const lambdaT = lambdaOfSigma(this.sigmas[stepIndex + 1]!);
    const lambdaS0 = lambdaOfSigma(this.sigmas[stepIndex]!);
    const lambdaS1 = lambdaOfSigma(this.sigmas[stepIndex - 1]!);
    const h = lambdaT - lambdaS0;
    const h0 = lambdaS0 - lambdaS1;
    const r0 = h0 / h;
    const ratio = sigmaT / sigmaS0;
    const phi = Math.exp(-h) - 1;
    const k0 = -alphaT * phi;
    // midpoint: x_t = ratio * x - alpha_t (e^-h - 1) D0 - 0.5 alpha_t (e^-h - 1) D1
    // heun:     x_t = ratio * x - alpha_t (e^-h - 1) D0 + alpha_t ((e^-h - 1) / h + 1) D1
    const k1 = this.config.solver_type === 'heun' ? alphaT * (phi / h + 1) : 0.5 * k0;
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const d1 = (m0[i]! - m1[i]!) / r0;
      out[i] = ratio * sample[i]! + k0 * m0[i]! + k1 * d1;
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
    const { alphaT, sigmaT } = sigmaToAlphaSigmaT(this.sigmas[stepIndex]!);
    return axpby(alphaT, original, sigmaT, noise);
  }
}
