import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  createNoise,
  MAX_SEED,
  MT19937,
  NOISE_SOURCES,
  NumpyRandomState,
  TorchGenerator,
  type NoiseSourceName,
} from '../src/diffusion/noise/index.js';

/** Written by scripts/reference/noise.py from torch 1.13 and numpy 1.24 (see test/fixtures/noise/README.md). */
interface Call {
  shape: number[];
  first: number[];
  last: number[];
  sum: number;
  sumsq: number;
  sha256: string;
  values?: number[];
}
interface Case {
  source: NoiseSourceName;
  seed: number;
  calls: Call[];
}
const reference = JSON.parse(readFileSync(new URL('./fixtures/noise/reference.json', import.meta.url), 'utf8')) as {
  torchCpuCapability: string;
  cases: Case[];
};

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const sha256 = (x: Float32Array) =>
  createHash('sha256')
    .update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
    .digest('hex');
const name = (c: Case) => `${c.source} seed ${c.seed}: ${c.calls.map((call) => call.shape.join('x')).join(' then ')}`;

function maxDiff(actual: ArrayLike<number>, expected: readonly number[]): number {
  expect(actual.length).toBe(expected.length);
  let max = 0;
  for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(actual[i]! - expected[i]!));
  return max;
}

function sums(x: Float32Array): { sum: number; sumsq: number } {
  let sum = 0;
  let sumsq = 0;
  for (const v of x) {
    sum += v;
    sumsq += v * v;
  }
  return { sum, sumsq };
}

describe('noise against the real torch and numpy', () => {
  it('the fixture covers both sources, sizes not a multiple of 16 and sequences of calls', () => {
    expect(reference.torchCpuCapability).toBe('AVX2');
    expect(new Set(reference.cases.map((c) => c.source))).toEqual(new Set(NOISE_SOURCES));
    expect(reference.cases.some((c) => c.calls.some((call) => numel(call.shape) % 16 !== 0 && numel(call.shape) > 16))).toBe(true);
    expect(reference.cases.some((c) => c.calls.length > 1)).toBe(true);
  });

  for (const c of reference.cases) {
    it(name(c), () => {
      const noise = createNoise(c.source, c.seed);
      for (const call of c.calls) {
        const n = numel(call.shape);
        const x = noise.randn(n);
        expect(maxDiff(x.subarray(0, 16), call.first)).toBeLessThanOrEqual(1e-6);
        expect(maxDiff(x.subarray(Math.max(0, n - 16)), call.last)).toBeLessThanOrEqual(1e-6);
        if (call.values) expect(maxDiff(x, call.values)).toBeLessThanOrEqual(1e-6);
        const { sum, sumsq } = sums(x);
        expect(Math.abs(sum - call.sum)).toBeLessThanOrEqual(1e-9 * Math.max(1, call.sumsq));
        expect(Math.abs(sumsq - call.sumsq)).toBeLessThanOrEqual(1e-9 * Math.max(1, call.sumsq));
        // Bit-exact: every float32 of the tensor.
        expect(sha256(x)).toBe(call.sha256);
      }
    });
  }

  // Against torch run with ATEN_CPU_CAPABILITY=default the portable kernel measured within 2.4e-7.
  it("torch's portable kernel (no AVX2: its own log/sincos) stays within a few float32 ulps of the AVX2 one", () => {
    for (const c of reference.cases.filter((c) => c.source === 'torch' && c.calls.length === 1)) {
      const call = c.calls[0]!;
      const x = new TorchGenerator(c.seed, { kernel: 'scalar' }).randn(numel(call.shape));
      expect(maxDiff(x.subarray(0, 16), call.first)).toBeLessThanOrEqual(4e-6);
      expect(maxDiff(x.subarray(Math.max(0, x.length - 16)), call.last)).toBeLessThanOrEqual(4e-6);
      if (call.values) expect(maxDiff(x, call.values)).toBeLessThanOrEqual(4e-6);
    }
  });
});

describe('generators', () => {
  it('MT19937: the 10000th output for seed 5489 is 4123659995 (C++ std::mt19937)', () => {
    const mt = new MT19937(5489);
    let v = 0;
    for (let i = 0; i < 10000; i++) v = mt.nextUint32();
    expect(v).toBe(4123659995);
  });

  it('same seed, same noise; another seed, other noise; standard-normal statistics', () => {
    for (const source of NOISE_SOURCES) {
      const a = createNoise(source, 123).randn(100_000);
      expect(sha256(createNoise(source, 123).randn(100_000))).toBe(sha256(a));
      expect(sha256(createNoise(source, 124).randn(100_000))).not.toBe(sha256(a));
      const { sum, sumsq } = sums(createNoise(source, MAX_SEED).randn(100_000));
      const mean = sum / 100_000;
      expect(Math.abs(mean)).toBeLessThan(0.02);
      expect(Math.abs(sumsq / 100_000 - mean * mean - 1)).toBeLessThan(0.02);
    }
  });

  it('validates seeds and counts', () => {
    for (const seed of [-1, MAX_SEED + 1, 1.5, Number.NaN]) {
      expect(() => new TorchGenerator(seed)).toThrow(/seed/);
      expect(() => new NumpyRandomState(seed)).toThrow(/seed/);
    }
    expect(() => createNoise('torch', 1).randn(-1)).toThrow(/count/);
    expect(() => createNoise('jax' as NoiseSourceName, 1)).toThrow(/noise source/);
    expect(createNoise('numpy', 1).randn(0)).toHaveLength(0);
  });
});

function runNoise(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/noise.ts', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Each run starts a Node process that compiles the script with tsx.
describe('npm run noise', { timeout: 120_000 }, () => {
  it('prints the fixture figures for a latent-sized tensor, and for a small one', () => {
    for (const [source, seed, shape] of [
      ['torch', 42, [1, 4, 64, 64]],
      ['numpy', MAX_SEED, [3, 4, 8, 6]],
      ['torch', 1, [5]],
    ] as const) {
      const expected = reference.cases.find(
        (c) => c.source === source && c.seed === seed && c.calls.length === 1 && c.calls[0]!.shape.join() === shape.join(),
      )!.calls[0]!;
      const r = runNoise(['--seed', String(seed), '--shape', shape.join(','), '--source', source]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(1);
      const out = JSON.parse(lines[0]!) as Record<string, unknown>;
      expect(Object.keys(out)).toEqual(['source', 'seed', 'shape', 'first', 'last', 'sum', 'sumsq']);
      expect(out).toMatchObject({ source, seed, shape: [...shape], first: expected.first, last: expected.last });
      expect(Math.abs((out.sum as number) - expected.sum)).toBeLessThanOrEqual(1e-9 * expected.sumsq);
      expect(Math.abs((out.sumsq as number) - expected.sumsq)).toBeLessThanOrEqual(1e-9 * expected.sumsq);
    }
  });

  it('defaults to torch', () => {
    const out = JSON.parse(runNoise(['--seed', '0', '--shape', '1']).stdout) as { source: string; first: number[] };
    expect(out.source).toBe('torch');
    expect(out.first).toEqual([1.5409960746765137]);
  });

  it('refuses bad arguments with exit code 2 and the flag and range named', () => {
    for (const [args, message] of [
      [['--shape', '4'], /--seed is required/],
      [['--seed', '-1', '--shape', '4'], /--seed must be an integer from 0 to 2147483647/],
      [['--seed', '2147483648', '--shape', '4'], /--seed must be an integer from 0 to 2147483647/],
      [['--seed', '1.5', '--shape', '4'], /--seed/],
      [['--seed', '1'], /--shape is required/],
      [['--seed', '1', '--shape', '1,0,4'], /--shape must be positive integers/],
      [['--seed', '1', '--shape', '4,x'], /--shape must be positive integers/],
      [['--seed', '1', '--shape', '4', '--source', 'jax'], /--source must be one of torch, numpy/],
      [['--seed', '1', '--shape', '4', '--steps', '3'], /unknown argument/],
    ] as const) {
      const r = runNoise([...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(message);
    }
  });
});
