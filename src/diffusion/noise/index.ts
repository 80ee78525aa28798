/**
 * Seeded standard-normal noise that reproduces the reference implementations exactly:
 * 'torch' is torch's CPU generator (torch.randn with torch.Generator("cpu").manual_seed(seed),
 * what ComfyUI and diffusers with a CPU generator draw), 'numpy' is numpy's legacy
 * np.random.RandomState(seed).randn (what diffusers' ONNX pipelines draw).
 */
import type { NoiseSource } from '../schedulers/common.js';
import { NumpyRandomState } from './numpy-random-state.js';
import { TorchGenerator } from './torch-generator.js';

export { MAX_SEED, assertSeed } from './seed.js';
export { MT19937 } from './mt19937.js';
export { NumpyRandomState } from './numpy-random-state.js';
export { TorchGenerator, type TorchKernel } from './torch-generator.js';

export const NOISE_SOURCES = ['torch', 'numpy'] as const;
export type NoiseSourceName = (typeof NOISE_SOURCES)[number];

export function isNoiseSourceName(value: unknown): value is NoiseSourceName {
  return typeof value === 'string' && (NOISE_SOURCES as readonly string[]).includes(value);
}

/** A fresh generator for `seed`; consecutive randn calls continue its stream. */
export function createNoise(source: NoiseSourceName, seed: number): NoiseSource {
  switch (source) {
    case 'torch':
      return new TorchGenerator(seed);
    case 'numpy':
      return new NumpyRandomState(seed);
    default:
      throw new Error(`unknown noise source ${String(source)}; expected one of ${NOISE_SOURCES.join(', ')}`);
  }
}
