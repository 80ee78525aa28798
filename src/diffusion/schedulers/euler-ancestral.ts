/** EulerAncestralDiscreteScheduler (diffusers): Euler step to sigma_down plus fresh noise * sigma_up. */
import type { NoiseSource } from './common.js';
import { SigmaSchedulerBase } from './sigma-base.js';

export class EulerAncestralDiscreteScheduler extends SigmaSchedulerBase {
  readonly name = 'EULER_A' as const;

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, rng?: NoiseSource): Float32Array {
    if (!rng) throw new Error('EULER_A requires a noise source (rng) for step()');
    this.beginStep(modelOutput, stepIndex, sample);
    const sigmaFrom = this.sigmas[stepIndex]!;
    const sigmaTo = this.sigmas[stepIndex + 1]!;
    const sigmaUp = Math.sqrt((sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo)) / (sigmaFrom * sigmaFrom));
    const sigmaDown = Math.sqrt(Math.max(0, sigmaTo * sigmaTo - sigmaUp * sigmaUp));
    const dt = sigmaDown - sigmaFrom;
    // diffusers draws noise after the Euler part, on every step, including the last (sigma_up = 0).
    const noise = rng.randn(sample.length);
    const out = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      const pred = this.predictOriginal(modelOutput[i]!, x, sigmaFrom);
      const derivative = (x - pred) / sigmaFrom;
      out[i] = x + derivative * dt + noise[i]! * sigmaUp;
    }
    return out;
  }
}
