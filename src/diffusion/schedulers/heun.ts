/**
 * HeunDiscreteScheduler (diffusers): Heun's second-order method in sigma space. Every step but
 * the last evaluates the model twice, so the timesteps are interleaved: [t0, t1, t1, t2, t2, ...,
 * t(n-1), t(n-1)] (2n - 1 entries) and the sigmas [s0, s1, s1, ..., s(n-1), s(n-1), 0].
 */
import type { NoiseSource } from './common.js';
import { SigmaSchedulerBase } from './sigma-base.js';

const f32 = Math.fround;

export class HeunDiscreteScheduler extends SigmaSchedulerBase {
  readonly name = 'HEUN' as const;
  override readonly order = 2;
  /** Set by a first-order (Euler) evaluation, used by the correcting one that follows. */
  private prevDerivative: Float32Array | null = null;
  private dt: number | null = null;
  private firstSample: Float32Array | null = null;

  protected override resetHistory(): void {
    super.resetHistory();
    this.prevDerivative = null;
    this.dt = null;
    this.firstSample = null;
  }

  override setTimesteps(numInferenceSteps: number): void {
    // Heun keeps the Karras timesteps in float64.
    const { timesteps, sigmas } = this.baseSchedule(numInferenceSteps, false);
    const s = [...sigmas, 0].map(f32);
    this.sigmas = [s[0]!, ...s.slice(1, -1).flatMap((v) => [v, v]), s[s.length - 1]!];
    this.timesteps = [timesteps[0]!, ...timesteps.slice(1).flatMap((t) => [t, t])];
    this.numInferenceSteps = numInferenceSteps;
    this.resetHistory();
  }

  /** Whether the next step() is a first-order (Euler) evaluation. */
  get stateInFirstOrder(): boolean {
    return this.dt === null;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, _rng?: NoiseSource): Float32Array {
    this.beginStep(modelOutput, stepIndex, sample);
    const first = this.dt === null;
    const sigma = first ? this.sigmas[stepIndex]! : this.sigmas[stepIndex - 1]!;
    const sigmaNext = first ? this.sigmas[stepIndex + 1]! : this.sigmas[stepIndex]!;
    const sigmaInput = first ? sigma : sigmaNext;
    const clip = this.config.clip_sample;
    const range = this.config.clip_sample_range;
    const derivative = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      let pred = this.predictOriginal(modelOutput[i]!, x, sigmaInput);
      if (clip) pred = Math.min(Math.max(pred, -range), range);
      derivative[i] = (x - pred) / (first ? sigma : sigmaNext);
    }
    const out = new Float32Array(sample.length);
    if (first) {
      const dt = sigmaNext - sigma;
      this.prevDerivative = derivative;
      this.dt = dt;
      this.firstSample = sample;
      for (let i = 0; i < out.length; i++) out[i] = sample[i]! + derivative[i]! * dt;
    } else {
      const prev = this.prevDerivative!;
      const dt = this.dt!;
      const base = this.firstSample!;
      for (let i = 0; i < out.length; i++) out[i] = base[i]! + ((prev[i]! + derivative[i]!) / 2) * dt;
      this.prevDerivative = null;
      this.dt = null;
      this.firstSample = null;
    }
    return out;
  }
}
