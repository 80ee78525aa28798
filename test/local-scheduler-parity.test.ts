/**
 * Parity with diffusers v0.30.3: the fixtures in test/fixtures/schedulers/ were made by
 * scripts/reference/schedulers.py running diffusers' own scheduler classes built with
 * `Class.from_config(SD 1.5's scheduler_config.json)` on a small latent with a deterministic
 * model (see the README there). No Python runs here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createScheduler, type NoiseSource, type SchedulerName } from '../src/diffusion/schedulers/index.js';

const DIR = path.join(import.meta.dirname, 'fixtures', 'schedulers');
const f32 = Math.fround;

interface Run {
  steps: number;
  timesteps: number[];
  sigmas: number[];
  init_noise_sigma: number;
  latents: number[][];
  noise_draws: number;
  noise?: number[][];
}
interface Img2Img {
  strength: number;
  steps: number;
  start_index: number;
  timesteps: number[];
  noised: number[];
  final: number[];
  noise_draws: number;
  noise?: number[][];
}
interface Fixture {
  name: SchedulerName;
  class: string;
  overrides: Record<string, unknown>;
  base_config: Record<string, unknown>;
  pattern: number[];
  x_T: number[];
  init_latents: number[];
  img2img_noise: number[];
  runs: Run[];
  img2img: Img2Img[];
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
const load = (file: string): Fixture => JSON.parse(readFileSync(path.join(DIR, file), 'utf8')) as Fixture;

/** The fixture's model, in float32 like torch: out = 0.9 * x_in + pattern * fround(t / 1000). */
function model(xIn: Float32Array, t: number, pattern: number[]): Float32Array {
  const c = f32(t / 1000);
  const k = f32(0.9);
  const out = new Float32Array(xIn.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(f32(xIn[i]! * k) + f32(pattern[i]! * c));
  return out;
}

/** Replays the noise diffusers drew (EULER_A), or zeros (EULER's unused churn draw), counting the draws. */
class ReplayNoise implements NoiseSource {
  draws = 0;
  constructor(
    private readonly stored: number[][] | undefined,
    private readonly size: number,
  ) {}
  randn(count: number): Float32Array {
    expect(count).toBe(this.size);
    const values = this.stored?.[this.draws];
    this.draws++;
    if (this.stored) {
      expect(values, 'more draws than diffusers made').toBeDefined();
      return Float32Array.from(values!);
    }
    return new Float32Array(count);
  }
}

/** max |a - b| / max |b| */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den === 0 ? num : num / den;
}

function expectClose(actual: readonly number[], expected: readonly number[], rel: number, what: string): number {
  expect(actual.length, what).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const err = Math.abs(actual[i]! - e) / Math.max(Math.abs(e), 1e-12);
    worst = Math.max(worst, e === 0 ? Math.abs(actual[i]!) : err);
  }
  expect(worst, what).toBeLessThanOrEqual(rel);
  return worst;
}

const LATENT_TOL = 1e-4;
const worstLatents = new Map<string, number>();
const worstSigmas = new Map<string, number>();
const note = (m: Map<string, number>, key: string, v: number): void => void m.set(key, Math.max(m.get(key) ?? 0, v));

afterAll(() => {
  const rows = [...worstLatents.keys()]
    .sort()
    .map((k) => `${k}: latents ${worstLatents.get(k)!.toExponential(2)}, sigmas ${(worstSigmas.get(k) ?? 0).toExponential(2)}`);
  console.log(`max relative errors vs diffusers 0.30.3:\n  ${rows.join('\n  ')}`);
});

describe.each(files)('%s', (file) => {
  const fx = load(file);
  const label = file.replace(/\.json$/, '');
  const config = { ...fx.base_config, ...fx.overrides };

  it.each(fx.runs.map((r) => [r.steps, r] as const))('%i steps: timesteps, sigmas, init sigma, every step', (_steps, run) => {
    const s = createScheduler(fx.name, config);
    s.setTimesteps(run.steps);
    expect(s.timesteps.length).toBe(run.timesteps.length);
    s.timesteps.forEach((t, i) => expect(Math.abs(t - run.timesteps[i]!), `timestep ${i}`).toBeLessThanOrEqual(1e-4));
    note(worstSigmas, label, expectClose(s.sigmas, run.sigmas, 1e-5, 'sigmas'));
    expect(Math.abs(s.initNoiseSigma - run.init_noise_sigma) / run.init_noise_sigma).toBeLessThanOrEqual(1e-5);
    const rng = new ReplayNoise(run.noise, fx.x_T.length);
    let sample: Float32Array = Float32Array.from(fx.x_T, (v) => f32(v * s.initNoiseSigma));
    for (let i = 0; i < s.timesteps.length; i++) {
      const xIn = s.scaleModelInput(sample, i);
      sample = s.step(model(xIn, s.timesteps[i]!, fx.pattern), i, sample, rng);
      const err = relErr(sample, run.latents[i]!);
      note(worstLatents, label, err);
      expect(err, `latents after entry ${i}`).toBeLessThanOrEqual(LATENT_TOL);
    }
    expect(rng.draws, 'noise draws').toBe(run.noise_draws);
    // the last entry completes the n-th user-facing step
    expect(s.stepNumber(s.timesteps.length - 1)).toBe(run.steps);
  });

  it.each(fx.img2img.map((r) => [r.strength, r] as const))('image2image, strength %d', (_strength, r) => {
    const s = createScheduler(fx.name, config);
    const { timesteps, startIndex } = s.timestepsForStrength(r.steps, r.strength);
    expect(startIndex).toBe(r.start_index);
    expect(timesteps.length).toBe(r.timesteps.length);
    timesteps.forEach((t, i) => expect(Math.abs(t - r.timesteps[i]!)).toBeLessThanOrEqual(1e-4));
    const init = Float32Array.from(fx.init_latents);
    const noise = Float32Array.from(fx.img2img_noise);
    let sample: Float32Array = s.addNoise(init, noise, startIndex);
    expect(relErr(sample, r.noised)).toBeLessThanOrEqual(1e-5);
    const rng = new ReplayNoise(r.noise, init.length);
    for (let i = startIndex; i < s.timesteps.length; i++) {
      sample = s.step(model(s.scaleModelInput(sample, i), s.timesteps[i]!, fx.pattern), i, sample, rng);
    }
    const err = relErr(sample, r.final);
    note(worstLatents, label, err);
    expect(err, 'final latents').toBeLessThanOrEqual(LATENT_TOL);
    expect(rng.draws).toBe(r.noise_draws);
    const total = s.stepNumber(s.timesteps.length - 1, startIndex);
    expect(total).toBe(r.steps - Math.floor(startIndex / s.order));
  });
});
