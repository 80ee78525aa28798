/** EulerDiscreteScheduler (diffusers), s_churn = 0: deterministic Euler ODE step. */
import type { NoiseSource } from './common.js';
import { SigmaSchedulerBase } from './sigma-base.js';

const f32 = Math.fround;

export class EulerDiscreteScheduler extends SigmaSchedulerBase {
  readonly name = 'EULER' as const;

  override setTimesteps(numInferenceSteps: number): void {
    const { timesteps, sigmas } = this.baseSchedule(numInferenceSteps);
    const last = this.config.final_sigmas_type === 'sigma_min' ? this.trainSigmas[0]! : 0;
    this.timesteps = timesteps;
    this.sigmas = [...sigmas, last].map(f32);
    this.numInferenceSteps = numInferenceSteps;
    this.resetHistory();
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, rng?: NoiseSource): Float32Array {
    this.beginStep(modelOutput, stepIndex, sample);
    // diffusers draws the churn noise at every step, before knowing gamma (0 here): the draw is
    // unused but advances the generator, so the stream stays as diffusers has it.
    rng?.randn(sample.length);
    const sigma = this.sigmas[stepIndex]!;
    const dt = this.sigmas[stepIndex + 1]! - sigma;
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      const pred = this.predictOriginal(modelOutput[i]!, x, sigma);
      const derivative = (x - pred) / sigma;
      out[i] = x + derivative * dt;
    }
    return out;
  }
}
