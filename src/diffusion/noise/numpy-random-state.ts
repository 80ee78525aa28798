/**
 * numpy's legacy `np.random.RandomState(seed)` and its randn, rounded to float32 as
 * `.astype(np.float32)` does: MT19937 seeded with init_genrand, 53-bit doubles
 * ((a >> 5) * 2^26 + (b >> 6)) / 2^53, and legacy_gauss: the polar (Marsaglia) method,
 * rejecting r2 >= 1 or 0, returning f * x2 and keeping f * x1 for the next value (across calls).
 */
import { MT19937 } from './mt19937.js';
import { assertCount, assertSeed } from './seed.js';

const TWO_POW_26 = 67108864;
const TWO_POW_53 = 9007199254740992;

export class NumpyRandomState {
  readonly seed: number;
  private readonly engine: MT19937;
  private gauss: number | null = null;

  constructor(seed: number) {
    assertSeed(seed);
    this.seed = seed;
    this.engine = new MT19937(seed);
  }

  /** random_sample(): a double in [0, 1) with 53 random bits. */
  randomDouble(): number {
    const a = this.engine.nextUint32() >>> 5;
    const b = this.engine.nextUint32() >>> 6;
    return (a * TWO_POW_26 + b) / TWO_POW_53;
  }

  /** legacy_gauss: one standard-normal double. */
  gaussian(): number {
    if (this.gauss !== null) {
      const v = this.gauss;
      this.gauss = null;
      return v;
    }
    let x1: number;
    let x2: number;
    let r2: number;
    do {
      x1 = 2 * this.randomDouble() - 1;
      x2 = 2 * this.randomDouble() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt((-2 * Math.log(r2)) / r2);
    this.gauss = f * x1;
    return f * x2;
  }

  /** The next `count` values of randn(count), as float32. */
  randn(count: number): Float32Array {
    assertCount(count);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.gaussian();
    return out;
  }
}
