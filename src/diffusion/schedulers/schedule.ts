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
 * linear: linspace(beta_start, beta_end, N); scaled_linear: linspace(sqrt(start), sqrt(end), N) ** 2;
 * squaredcos_cap_v2: betas_for_alpha_bar (cosine); then rescale_zero_terminal_snr when asked.
 */
export function computeBetas(config: SchedulerConfig): Float64Array {
  const n = config.num_train_timesteps;
  let betas: Float64Array = new Float64Array(n);
  if (config.trained_betas !== null) {
    config.trained_betas.forEach((b, i) => (betas[i] = f32(b)));
  } else if (config.beta_schedule === 'linear') {
    const lin = linspace(config.beta_start, config.beta_end, n);
    for (let i = 0; i < n; i++) betas[i] = f32(lin[i]!);
  } else if (config.beta_schedule === 'scaled_linear') {
    const lin = linspace(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), n);
    for (let i = 0; i < n; i++) {
      const v = f32(lin[i]!);
      betas[i] = f32(v * v);
    }
  } else {
    const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * Math.PI * 0.5) ** 2;
    for (let i = 0; i < n; i++) betas[i] = f32(Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999));
  }
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

/** diffusers' rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1), in float32 steps. */
function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const n = betas.length;
  const sqrtBar = new Float64Array(n);
  let acc = 1;
  for (let i = 0; i < n; i++) {
    acc = f32(acc * f32(1 - betas[i]!));
    sqrtBar[i] = f32(Math.sqrt(acc));
  }
  const first = sqrtBar[0]!;
  const last = sqrtBar[n - 1]!;
  const k = f32(first / f32(first - last));
  const bar = sqrtBar.map((v) => {
    const r = f32(f32(v - last) * k);
    return f32(r * r);
  });
  const out = new Float64Array(n);
  out[0] = f32(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = f32(1 - f32(bar[i]! / bar[i - 1]!));
  return out;
}

/** Classes that set alphas_cumprod[-1] = 2**-24 after rescaling to zero terminal SNR (so the first sigma is finite). */
const CLAMPS_TERMINAL_ALPHA = new Set([
  'EulerDiscreteScheduler',
  'EulerAncestralDiscreteScheduler',
  'DPMSolverMultistepScheduler',
  'UniPCMultistepScheduler',
]);

/** alphas_cumprod = cumprod(1 - betas), accumulated in float32 like torch. */
export function computeAlphasCumprod(config: SchedulerConfig): Float64Array {
  const betas = computeBetas(config);
  const out = new Float64Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc = f32(acc * f32(1 - betas[i]!));
    out[i] = acc;
  }
  if (config.rescale_betas_zero_snr && CLAMPS_TERMINAL_ALPHA.has(config.className)) out[out.length - 1] = 2 ** -24;
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
 * Inference timesteps for EulerDiscrete / EulerAncestralDiscrete / LMS / Heun / DDIM / PNDM
 * (descending). `roundLinspace` selects DDIM's and PNDM's integer rounding for 'linspace'
 * (the k-diffusion schedulers keep linspace timesteps fractional, as float32).
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
    case 'trailing':
      return trailingTimesteps(N, N / numInferenceSteps);
  }
}

/** np.round(np.arange(last, 0, -ratio)) - 1 */
function trailingTimesteps(last: number, ratio: number): number[] {
  const len = Math.ceil(last / ratio);
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push(roundHalfEven(last - i * ratio) - 1);
  return out;
}

/**
 * Timesteps of DPMSolverMultistep / UniPCMultistep (integers, descending): n + 1 points with
 * the last (0) dropped. `lastTimestep` is num_train_timesteps less DPM's lambda_min_clipped cut.
 */
export function multistepTimesteps(
  config: SchedulerConfig,
  numInferenceSteps: number,
  lastTimestep = config.num_train_timesteps,
): number[] {
  assertStepCount(numInferenceSteps, config);
  const n = numInferenceSteps;
  switch (config.timestep_spacing) {
    case 'linspace':
      return linspace(0, lastTimestep - 1, n + 1)
        .map(roundHalfEven)
        .reverse()
        .slice(0, n);
    case 'leading': {
      const ratio = Math.floor(lastTimestep / (n + 1));
      const out: number[] = [];
      for (let i = n; i >= 1; i--) out.push(i * ratio + config.steps_offset);
      return out;
    }
    case 'trailing':
      return trailingTimesteps(lastTimestep, config.num_train_timesteps / n);
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
