/** EulerDiscreteScheduler (diffusers), s_churn = 0: deterministic Euler ODE step. */
import { assertSameLength, assertStepIndex, type NoiseSource } from './common.js';
import { SigmaSchedulerBase } from './sigma-base.js';

export class EulerDiscreteScheduler extends SigmaSchedulerBase {
  readonly name = 'EULER' as const;

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, _rng?: NoiseSource): Float32Array {
    assertStepIndex(stepIndex, this.timesteps.length);
    assertSameLength(modelOutput, sample, 'step');
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
