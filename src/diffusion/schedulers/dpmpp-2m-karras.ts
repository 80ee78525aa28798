/**
 * DPMSolverMultistepScheduler (diffusers) configured as "DPM++ 2M Karras":
 * solver_order 2, algorithm_type 'dpmsolver++', solver_type 'midpoint',
 * use_karras_sigmas true, lower_order_final true, final_sigmas_type 'zero',
 * euler_at_final false. The sample lives in VP space (no input scaling).
 */
import type { SchedulerConfig } from './config.js';
import { assertSameLength, assertStepIndex, type NoiseSource, type Scheduler, type StrengthTimesteps, strengthTail } from './common.js';
import {
  assertStepCount,
  computeAlphasCumprod,
  computeTrainSigmas,
  karrasSigmas,
  roundHalfEven,
  sigmaToAlphaSigmaT,
  sigmaToT,
} from './schedule.js';

const SOLVER_ORDER = 2;

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly name = 'DPMPP_2M_KARRAS' as const;
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

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = computeAlphasCumprod(config);
    this.trainSigmas = computeTrainSigmas(this.alphasCumprod);
    this.logSigmas = this.trainSigmas.map(Math.log);
  }

  setTimesteps(numInferenceSteps: number): void {
    assertStepCount(numInferenceSteps, this.config);
    // Karras sigmas over the full training range: sigma_max = sigmas[N-1], sigma_min = sigmas[0].
    const sigmaMin = this.trainSigmas[0]!;
    const sigmaMax = this.trainSigmas[this.trainSigmas.length - 1]!;
    const sigmas = karrasSigmas(sigmaMin, sigmaMax, numInferenceSteps);
    // diffusers rounds these and stores them as int64.
    this.timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, this.logSigmas)));
    this.sigmas = [...sigmas.map((s) => Math.fround(s)), 0]; // final_sigmas_type 'zero'
    this.numInferenceSteps = numInferenceSteps;
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
    // final_sigmas_type 'zero' forces a first-order last step.
    const lowerOrderFinal = stepIndex === n - 1;
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
    const c = -alphaT * (expNegH - 1);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) out[i] = ratio * sample[i]! + c * x0[i]!;
    return out;
  }

  private secondOrderUpdate(stepIndex: number, sample: Float32Array): Float32Array {
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const m1 = this.modelOutputs[this.modelOutputs.length - 2]!;
    const { alphaT, sigmaT } = sigmaToAlphaSigmaT(this.sigmas[stepIndex + 1]!);
    const { alphaT: alphaS0, sigmaT: sigmaS0 } = sigmaToAlphaSigmaT(this.sigmas[stepIndex]!);
    const { alphaT: alphaS1, sigmaT: sigmaS1 } = sigmaToAlphaSigmaT(this.sigmas[stepIndex - 1]!);
    const lambdaT = Math.log(alphaT) - Math.log(sigmaT);
    const lambdaS0 = Math.log(alphaS0) - Math.log(sigmaS0);
    const lambdaS1 = Math.log(alphaS1) - Math.log(sigmaS1);
    const h = lambdaT - lambdaS0;
    const h0 = lambdaS0 - lambdaS1;
    const r0 = h0 / h;
    const ratio = sigmaT / sigmaS0;
    const c = -alphaT * (Math.exp(-h) - 1);
    // midpoint: x_t = ratio * x + c * D0 + 0.5 * c * D1, D0 = m0, D1 = (m0 - m1) / r0
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const d0 = m0[i]!;
      const d1 = (m0[i]! - m1[i]!) / r0;
      out[i] = ratio * sample[i]! + c * d0 + 0.5 * c * d1;
    }
    return out;
  }

  timestepsForStrength(numInferenceSteps: number, strength: number): StrengthTimesteps {
    return strengthTail(this, numInferenceSteps, strength);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    assertSameLength(original, noise, 'addNoise');
    assertStepIndex(stepIndex, this.timesteps.length);
    const { alphaT, sigmaT } = sigmaToAlphaSigmaT(this.sigmas[stepIndex]!);
    const out = new Float32Array(original.length);
    for (let i = 0; i < original.length; i++) out[i] = alphaT * original[i]! + sigmaT * noise[i]!;
    return out;
  }
}
