/**
 * Noise-schedule math shared by the schedulers (betas, alphas_cumprod, sigmas,
 * timestep spacing, Karras sigmas, sigma -> t interpolation). Pure functions,
 * mirroring the numpy/torch code in Hugging Face diffusers.
 */
import type { SchedulerConfig } from './config.js';

const f32 = Math.fround;

/** numpy's np.round / np.rint: round half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  if (Math.abs(x % 1) === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/** np.linspace(start, stop, num) in float64 (endpoint included). */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num <= 0) return [];
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(start + i * step);
  out[num - 1] = stop;
  return out;
}

/** np.interp(x, xp, fp) for increasing xp. */
export function interp(x: number, xp: ArrayLike<number>, fp: ArrayLike<number>): number {
  const n = xp.length;
  if (n === 0) throw new Error('interp: empty table');
  if (x <= xp[0]!) return fp[0]!;
  if (x >= xp[n - 1]!) return fp[n - 1]!;
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xp[mid]! <= x) lo = mid;
    else hi = mid;
  }
  const x0 = xp[lo]!;
  const x1 = xp[hi]!;
  const w = (x - x0) / (x1 - x0);
  return fp[lo]! + w * (fp[hi]! - fp[lo]!);
}

/**
 * betas as diffusers builds them (torch float32):
 * linear: linspace(beta_start, beta_end, N); scaled_linear: linspace(sqrt(start), sqrt(end), N) ** 2.
 */
export function computeBetas(config: SchedulerConfig): Float64Array {
  const n = config.num_train_timesteps;
  const betas = new Float64Array(n);
  if (config.trained_betas !== null) {
    config.trained_betas.forEach((b, i) => (betas[i] = f32(b)));
    return betas;
  }
  if (config.beta_schedule === 'linear') {
    const lin = linspace(config.beta_start, config.beta_end, n);
    for (let i = 0; i < n; i++) betas[i] = f32(lin[i]!);
  } else {
    const lin = linspace(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), n);
    for (let i = 0; i < n; i++) {
      const v = f32(lin[i]!);
      betas[i] = f32(v * v);
    }
  }
  return betas;
}

/** alphas_cumprod = cumprod(1 - betas), accumulated in float32 like torch. */
export function computeAlphasCumprod(config: SchedulerConfig): Float64Array {
  const betas = computeBetas(config);
  const out = new Float64Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc = f32(acc * f32(1 - betas[i]!));
    out[i] = acc;
  }
  return out;
}

/** Training sigmas ((1 - a) / a) ** 0.5 (float32 values, index = timestep). */
export function computeTrainSigmas(alphasCumprod: ArrayLike<number>): Float64Array {
  const out = new Float64Array(alphasCumprod.length);
  for (let i = 0; i < alphasCumprod.length; i++) {
    const a = alphasCumprod[i]!;
    out[i] = f32(Math.sqrt(f32(f32(1 - a) / a)));
  }
  return out;
}

export function assertStepCount(numInferenceSteps: number, config: SchedulerConfig): void {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1) {
    throw new Error(`numInferenceSteps must be a positive integer, got ${numInferenceSteps}`);
  }
  if (numInferenceSteps > config.num_train_timesteps) {
    throw new Error(`numInferenceSteps (${numInferenceSteps}) cannot exceed num_train_timesteps (${config.num_train_timesteps})`);
  }
}

/**
 * Inference timesteps for EulerDiscrete / EulerAncestralDiscrete / DDIM
 * (descending). `round` selects DDIM's integer rounding for 'linspace'
 * (Euler keeps linspace timesteps fractional, as float32).
 */
export function spacedTimesteps(config: SchedulerConfig, numInferenceSteps: number, roundLinspace: boolean): number[] {
  assertStepCount(numInferenceSteps, config);
  const N = config.num_train_timesteps;
  switch (config.timestep_spacing) {
    case 'linspace': {
      const lin = linspace(0, N - 1, numInferenceSteps).reverse();
      return roundLinspace ? lin.map(roundHalfEven) : lin.map((t) => f32(t));
    }
    case 'leading': {
      const ratio = Math.floor(N / numInferenceSteps);
      const out: number[] = [];
      for (let i = numInferenceSteps - 1; i >= 0; i--) out.push(i * ratio + config.steps_offset);
      return out;
    }
    case 'trailing': {
      // np.round(np.arange(N, 0, -N / n)) - 1
      const ratio = N / numInferenceSteps;
      const len = Math.ceil((0 - N) / -ratio);
      const out: number[] = [];
      for (let i = 0; i < len; i++) out.push(roundHalfEven(N - i * ratio) - 1);
      return out;
    }
  }
}

/** Karras et al. (2022) sigmas, rho = 7, from sigmaMax down to sigmaMin (n values). */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, numInferenceSteps: number, rho = 7): number[] {
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return linspace(0, 1, numInferenceSteps).map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/** diffusers' `_sigma_to_t`: piecewise-linear interpolation of t in log-sigma space. */
export function sigmaToT(sigma: number, logSigmas: ArrayLike<number>): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const n = logSigmas.length;
  // low_idx = (number of log_sigmas <= log_sigma) - 1, clipped to [0, n - 2]
  let count = 0;
  for (let i = 0; i < n; i++) if (logSigma - logSigmas[i]! >= 0) count++;
  const lowIdx = Math.min(Math.max(count - 1, 0), n - 2);
  const highIdx = lowIdx + 1;
  const low = logSigmas[lowIdx]!;
  const high = logSigmas[highIdx]!;
  let w = (low - logSigma) / (low - high);
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * lowIdx + w * highIdx;
}

/** VE sigma -> VP (alpha_t, sigma_t): alpha = 1/sqrt(sigma^2+1), sigma_t = sigma*alpha. */
export function sigmaToAlphaSigmaT(sigma: number): { alphaT: number; sigmaT: number } {
  const alphaT = 1 / Math.sqrt(sigma * sigma + 1);
  return { alphaT, sigmaT: sigma * alphaT };
}
