/**
 * torch's CPU generator: `torch.Generator("cpu").manual_seed(seed)` and torch.randn on it, in
 * float32, as torch 1.13's CPU normal kernel computes it (aten/src/ATen/native/cpu/
 * DistributionTemplates.h):
 *
 * - numel >= 16 (a contiguous float tensor): one uniform per element, 24-bit floats
 *   (MT output & 0xffffff) / 2^24; then Box-Muller on each block of 16, u1 = 1 - data[j] and
 *   u2 = data[j + 8] for j < 8, cos into data[j] and sin into data[j + 8]; when numel % 16 != 0
 *   the last 16 values are drawn again (16 new uniforms) and transformed in place.
 * - numel < 16: at::normal_distribution<double> per element, 53-bit uniforms from two MT outputs,
 *   Box-Muller in double with the sine kept on the generator for the next element (also across
 *   calls; manual_seed clears it), each value then rounded to float32.
 *
 * The block of 16 is computed as the AVX2 kernel does (avx_mathfun's log and sincos, see
 * avx-mathfun.ts), torch's path on x86-64 CPUs with AVX2; `kernel: 'scalar'` follows the portable
 * kernel instead (std::log, std::cos in float32, torch on CPUs without AVX2 or in builds where the
 * AVX2 variant is not chosen), which differs from it only in the last bits.
 */
import { logAvx, sinCosAvx } from './avx-mathfun.js';
import { f32 } from './float32.js';
import { MT19937 } from './mt19937.js';
import { assertCount, assertSeed } from './seed.js';

export type TorchKernel = 'avx2' | 'scalar';

const TWO_POW_24 = 16777216;
const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;
const TWO_PI_F32 = f32(2 * Math.PI);

export class TorchGenerator {
  readonly seed: number;
  readonly kernel: TorchKernel;
  private readonly engine: MT19937;
  /** at::normal_distribution<double>'s cached second value (CPUGeneratorImpl::next_double_normal_sample). */
  private nextDoubleNormal: number | null = null;

  constructor(seed: number, options: { kernel?: TorchKernel } = {}) {
    assertSeed(seed);
    this.seed = seed;
    this.kernel = options.kernel ?? 'avx2';
    this.engine = new MT19937(seed);
  }

  /** uniform_real_distribution<float>(0, 1): 24 bits of one 32-bit output. */
  private uniformFloat(): number {
    return (this.engine.nextUint32() & 0xffffff) / TWO_POW_24;
  }

  /** uniform_real_distribution<double>(0, 1): 53 bits of random64() = (first << 32) | second. */
  private uniformDouble(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    return ((hi & 0x1fffff) * TWO_POW_32 + lo) / TWO_POW_53;
  }

  /** at::normal_distribution<double>(0, 1) on this generator. */
  private normalDouble(): number {
    if (this.nextDoubleNormal !== null) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = null;
      return v;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** The next `count` values of torch.randn((count,), generator=this) as float32. */
  randn(count: number): Float32Array {
    assertCount(count);
    const out = new Float32Array(count);
    if (count < 16) {
      for (let i = 0; i < count; i++) out[i] = this.normalDouble();
      return out;
    }
    for (let i = 0; i < count; i++) out[i] = this.uniformFloat();
    const fill = this.kernel === 'avx2' ? fill16Avx2 : fill16Scalar;
    for (let i = 0; i + 16 <= count; i += 16) fill(out, i);
    if (count % 16 !== 0) {
      const start = count - 16;
      for (let i = start; i < count; i++) out[i] = this.uniformFloat();
      fill(out, start);
    }
    return out;
  }
}

/** normal_fill_16_AVX2 on data[at .. at + 16) (mean 0, std 1: the final fmadd is exact). */
function fill16Avx2(data: Float32Array, at: number): void {
  for (let j = at; j < at + 8; j++) {
    const u1 = f32(1 - data[j]!);
    const u2 = data[j + 8]!;
    const radius = f32(Math.sqrt(f32(-2 * logAvx(u1))));
    const [sin, cos] = sinCosAvx(f32(TWO_PI_F32 * u2));
    data[j] = radius * cos;
    data[j + 8] = radius * sin;
  }
}

/** normal_fill_16 (the portable kernel) in float32: std::log/std::cos/std::sin of floats. */
function fill16Scalar(data: Float32Array, at: number): void {
  for (let j = at; j < at + 8; j++) {
    const u1 = f32(1 - data[j]!);
    const u2 = data[j + 8]!;
    const radius = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))));
    const theta = f32(2 * Math.PI * u2); // 2.0f * c10::pi<double> * u2: in double, then to float
    data[j] = radius * f32(Math.cos(theta));
    data[j + 8] = radius * f32(Math.sin(theta));
  }
}
