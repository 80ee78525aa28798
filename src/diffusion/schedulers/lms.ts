/**
 * LMSDiscreteScheduler (diffusers): linear multistep of order 4 in sigma space. The coefficient
 * of each past derivative is the integral over [sigma_t, sigma_t+1] of its Lagrange basis
 * polynomial through the last `order` sigmas, which diffusers gets from scipy's quad; the
 * integrand is a polynomial of degree <= 3, which Gauss-Legendre quadrature with 4 nodes
 * integrates exactly (to rounding, ~1e-16, as quad does).
 */
import type { NoiseSource } from './common.js';
import { SigmaSchedulerBase } from './sigma-base.js';

const LMS_ORDER = 4;

/** Gauss-Legendre nodes and weights on [-1, 1] (Newton's method on P_n), exact for degree 2n - 1. */
export function gaussLegendre(n: number): { nodes: number[]; weights: number[] } {
  const nodes: number[] = [];
  const weights: number[] = [];
  for (let i = 1; i <= n; i++) {
    let x = Math.cos((Math.PI * (i - 0.25)) / (n + 0.5));
    let dp = 0;
    for (let iter = 0; iter < 100; iter++) {
      let p0 = 1;
      let p1 = x;
      for (let k = 2; k <= n; k++) {
        const p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      const pn = n === 0 ? 1 : p1;
      const pn1 = n === 1 ? 1 : p0;
      dp = (n * (x * pn - pn1)) / (x * x - 1);
      const dx = pn / dp;
      x -= dx;
      if (Math.abs(dx) < 1e-16) break;
    }
    nodes.push(x);
    weights.push(2 / ((1 - x * x) * dp * dp));
  }
  return { nodes, weights };
}

const GL = gaussLegendre(LMS_ORDER);

/** Integral of f over [a, b] (exact for polynomials of degree <= 7). */
export function integratePolynomial(f: (x: number) => number, a: number, b: number): number {
  const half = (b - a) / 2;
  const mid = (a + b) / 2;
  let sum = 0;
  for (let i = 0; i < GL.nodes.length; i++) sum += GL.weights[i]! * f(mid + half * GL.nodes[i]!);
  return sum * half;
}

export class LMSDiscreteScheduler extends SigmaSchedulerBase {
  readonly name = 'LMS' as const;
  /** Derivatives of the last steps, oldest first (at most LMS_ORDER). */
  private derivatives: Float32Array[] = [];

  protected override resetHistory(): void {
    super.resetHistory();
    this.derivatives = [];
  }

  /** diffusers' get_lms_coefficient(order, t, current_order). */
  lmsCoefficient(order: number, t: number, currentOrder: number): number {
    const s = this.sigmas;
    const basis = (tau: number): number => {
      let prod = 1;
      for (let k = 0; k < order; k++) {
        if (k === currentOrder) continue;
        prod *= (tau - s[t - k]!) / (s[t - currentOrder]! - s[t - k]!);
      }
      return prod;
    };
    return integratePolynomial(basis, s[t]!, s[t + 1]!);
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, _rng?: NoiseSource): Float32Array {
    this.beginStep(modelOutput, stepIndex, sample);
    const sigma = this.sigmas[stepIndex]!;
    const derivative = new Float32Array(sample.length);
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      derivative[i] = (x - this.predictOriginal(modelOutput[i]!, x, sigma)) / sigma;
    }
    this.derivatives.push(derivative);
    if (this.derivatives.length > LMS_ORDER) this.derivatives.shift();
    // diffusers: order = min(step_index + 1, 4) from the schedule's start, zipped with the
    // derivatives it has (fewer after an image2image start mid-schedule).
    const order = Math.min(stepIndex + 1, LMS_ORDER);
    const used = Math.min(order, this.derivatives.length);
    const coeffs: number[] = [];
    for (let c = 0; c < used; c++) coeffs.push(this.lmsCoefficient(order, stepIndex, c));
    const out = Float32Array.from(sample);
    for (let c = 0; c < used; c++) {
      const d = this.derivatives[this.derivatives.length - 1 - c]!;
      const k = coeffs[c]!;
      for (let i = 0; i < out.length; i++) out[i] = out[i]! + k * d[i]!;
    }
    return out;
  }
}
