/**
 * UniPCMultistepScheduler (diffusers): the UniPC predictor-corrector in its data-prediction form
 * (predict_x0), B(h) = expm1(-h) ("bh2", or h: "bh1"), solver_order 2 by default. The sample
 * lives in VP space (no input scaling). Each step first corrects the sample the previous
 * predictor made (UniC, with the model output at it), then predicts the next one (UniP).
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
import { lambdaOfSigma } from './dpm-solver-multistep.js';
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

/** Solve the small dense system A x = b (Gaussian elimination with partial pivoting). */
export function solveLinear(A: number[][], b: number[]): number[] {
  const n = b.length;
  const m = A.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[p]![c]!)) p = r;
    [m[c], m[p]] = [m[p]!, m[c]!];
    for (let r = c + 1; r < n; r++) {
      const f = m[r]![c]! / m[c]![c]!;
      for (let k = c; k <= n; k++) m[r]![k] = m[r]![k]! - f * m[c]![k]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r]![n]!;
    for (let k = r + 1; k < n; k++) s -= m[r]![k]! * x[k]!;
    x[r] = s / m[r]![r]!;
  }
  return x;
}

export class UniPCMultistepScheduler implements Scheduler {
  readonly name = 'UNIPC' as const;
  readonly order = 1;
  readonly initNoiseSigma = 1.0;
  readonly config: SchedulerConfig;
  readonly alphasCumprod: Float64Array;
  readonly trainSigmas: Float64Array;
  timesteps: number[] = [];
  sigmas: number[] = [];
  numInferenceSteps = 0;
  private readonly logSigmas: Float64Array;
  /** Converted (x0) model outputs of the last solver_order steps, oldest first. */
  private modelOutputs: Float32Array[] = [];
  private lowerOrderNums = 0;
  private lastSample: Float32Array | null = null;
  private thisOrder = 1;
  private lastStepIndex = -1;

  constructor(config: SchedulerConfig) {
    this.config = config;
    this.alphasCumprod = computeAlphasCumprod(config);
    this.trainSigmas = computeTrainSigmas(this.alphasCumprod);
    this.logSigmas = this.trainSigmas.map(Math.log);
  }

  setTimesteps(numInferenceSteps: number): void {
    assertStepCount(numInferenceSteps, this.config);
    let timesteps: number[];
    let sigmas: number[];
    let last: number;
    if (this.config.use_karras_sigmas) {
      sigmas = karrasSigmas(this.trainSigmas[0]!, this.trainSigmas[this.trainSigmas.length - 1]!, numInferenceSteps);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, this.logSigmas)));
      last = this.config.final_sigmas_type === 'sigma_min' ? sigmas[sigmas.length - 1]! : 0;
    } else {
      timesteps = multistepTimesteps(this.config, numInferenceSteps);
      const train = Float64Array.from({ length: this.trainSigmas.length }, (_, i) => i);
      sigmas = timesteps.map((t) => interp(t, train, this.trainSigmas));
      last = this.config.final_sigmas_type === 'sigma_min' ? this.trainSigmas[0]! : 0;
    }
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, last].map((s) => Math.fround(s));
    this.numInferenceSteps = timesteps.length;
    this.resetState();
  }

  private resetState(): void {
    this.modelOutputs = [];
    this.lowerOrderNums = 0;
    this.lastSample = null;
    this.thisOrder = 1;
    this.lastStepIndex = -1;
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    return Float32Array.from(sample);
  }

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

  /** hh = -h, h_phi_1 = expm1(hh), B(h) and the b vector of the order conditions. */
  private coefficients(h: number, order: number): { hPhi1: number; Bh: number; b: number[] } {
    const hh = -h;
    const hPhi1 = Math.expm1(hh);
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    const Bh = this.config.solver_type === 'bh1' ? hh : Math.expm1(hh);
    const b: number[] = [];
    for (let i = 1; i <= order; i++) {
      b.push((hPhiK * factorial) / Bh);
      factorial *= i + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    return { hPhi1, Bh, b };
  }

  /** UniP (B(h)): predicts the sample at sigmas[stepIndex + 1]. */
  private predictor(sample: Float32Array, stepIndex: number, order: number): Float32Array {
    const m = this.modelOutputs;
    const m0 = m[m.length - 1]!;
    const sT = this.sigmas[stepIndex + 1]!;
    const s0 = this.sigmas[stepIndex]!;
    const { alphaT, sigmaT } = sigmaToAlphaSigmaT(sT);
    const { sigmaT: sigmaS0 } = sigmaToAlphaSigmaT(s0);
    const lambdaS0 = lambdaOfSigma(s0);
    const h = lambdaOfSigma(sT) - lambdaS0;
    const rks: number[] = [];
    const D1s: Float32Array[] = [];
    for (let i = 1; i < order; i++) {
      const mi = m[m.length - 1 - i]!;
      const rk = (lambdaOfSigma(this.sigmas[stepIndex - i]!) - lambdaS0) / h;
      rks.push(rk);
      D1s.push(mi.map((v, j) => (v - m0[j]!) / rk));
    }
    rks.push(1);
    const { hPhi1, Bh, b } = this.coefficients(h, order);
    let rhos: number[] = [];
    if (D1s.length > 0) {
      if (order === 2) rhos = [0.5];
      else {
        const R = Array.from({ length: order - 1 }, (_, i) => rks.slice(0, order - 1).map((r) => r ** i));
        rhos = solveLinear(R, b.slice(0, order - 1));
      }
    }
    const ratio = sigmaT / sigmaS0;
    const out = new Float32Array(sample.length);
    for (let j = 0; j < sample.length; j++) {
      let res = 0;
      for (let k = 0; k < D1s.length; k++) res += rhos[k]! * D1s[k]![j]!;
      out[j] = ratio * sample[j]! - alphaT * hPhi1 * m0[j]! - alphaT * Bh * res;
    }
    return out;
  }

  /** UniC (B(h)): corrects the sample at sigmas[stepIndex] with the model output there. */
  private corrector(modelT: Float32Array, lastSample: Float32Array, stepIndex: number, order: number): Float32Array {
    const m = this.modelOutputs;
    const m0 = m[m.length - 1]!;
    const sT = this.sigmas[stepIndex]!;
    const s0 = this.sigmas[stepIndex - 1]!;
    const { alphaT, sigmaT } = sigmaToAlphaSigmaT(sT);
    const { sigmaT: sigmaS0 } = sigmaToAlphaSigmaT(s0);
    const lambdaS0 = lambdaOfSigma(s0);
    const h = lambdaOfSigma(sT) - lambdaS0;
    const rks: number[] = [];
    const D1s: Float32Array[] = [];
    for (let i = 1; i < order; i++) {
      const mi = m[m.length - 1 - i]!;
      const rk = (lambdaOfSigma(this.sigmas[stepIndex - (i + 1)]!) - lambdaS0) / h;
      rks.push(rk);
      D1s.push(mi.map((v, j) => (v - m0[j]!) / rk));
    }
    rks.push(1);
    const { hPhi1, Bh, b } = this.coefficients(h, order);
    let rhos: number[];
    if (order === 1) rhos = [0.5];
    else {
      const R = Array.from({ length: order }, (_, i) => rks.map((r) => r ** i));
      rhos = solveLinear(R, b);
    }
    const ratio = sigmaT / sigmaS0;
    const rhoLast = rhos[rhos.length - 1]!;
    const out = new Float32Array(lastSample.length);
    for (let j = 0; j < lastSample.length; j++) {
      let res = 0;
      for (let k = 0; k < D1s.length; k++) res += rhos[k]! * D1s[k]![j]!;
      const d1t = modelT[j]! - m0[j]!;
      out[j] = ratio * lastSample[j]! - alphaT * hPhi1 * m0[j]! - alphaT * Bh * (res + rhoLast * d1t);
    }
    return out;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, _rng?: NoiseSource): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    assertSameLength(modelOutput, sample, 'step');
    if (stepIndex !== this.lastStepIndex + 1 || stepIndex === 0) this.resetState();
    this.lastStepIndex = stepIndex;
    const c = this.config;
    const useCorrector = stepIndex > 0 && !c.disable_corrector.includes(stepIndex - 1) && this.lastSample !== null;
    const converted = this.convertModelOutput(modelOutput, sample, this.sigmas[stepIndex]!);
    let x = sample;
    if (useCorrector) x = this.corrector(converted, this.lastSample!, stepIndex, this.thisOrder);
    this.modelOutputs.push(converted);
    if (this.modelOutputs.length > c.solver_order) this.modelOutputs.shift();
    const order = c.lower_order_final ? Math.min(c.solver_order, this.timesteps.length - stepIndex) : c.solver_order;
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1);
    this.lastSample = x;
    const prev = this.predictor(x, stepIndex, this.thisOrder);
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
    return prev;
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
