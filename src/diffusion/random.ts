/**
 * Seeded standard-normal noise, bit-identical on every machine and Node
 * version: xoshiro128** (32-bit integer ops only) seeded through splitmix32,
 * Box–Muller with log/sin/cos implemented here from IEEE-754 basic operations
 * (+ - * / sqrt are correctly rounded everywhere, unlike Math.log/Math.cos),
 * each value rounded with Math.fround. No Math.random.
 */

export const MAX_SEED = 2147483647;

export function assertSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new Error(`seed must be an integer in [0, ${MAX_SEED}], got ${seed}`);
  }
}

const TWO_POW_32 = 4294967296;
const LN2_HI = 6.9314718036912381649e-1; // fdlibm split of ln 2
const LN2_LO = 1.90821492927058770002e-10;
const SQRT1_2 = 0.7071067811865476;
const HALF_PI = 1.5707963267948966;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // little-endian: high word at [1]

/** Natural log for x > 0 (finite, normal), accurate to ~1 ulp, deterministic. */
export function detLog(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) throw new Error(`detLog: argument must be positive and finite, got ${x}`);
  // x = m * 2^e with m in [1, 2): read the exponent bits directly.
  f64[0] = x;
  const hi = u32[HI]!;
  let e = ((hi >>> 20) & 0x7ff) - 1023;
  u32[HI] = (hi & 0x800fffff) | 0x3ff00000;
  let m = f64[0]!;
  if (m > Math.SQRT2) {
    m /= 2;
    e += 1;
  } else if (m < SQRT1_2) {
    m *= 2;
    e -= 1;
  }
  // log(m) = 2 * atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716
  const s = (m - 1) / (m + 1);
  const s2 = s * s;
  let term = s;
  let sum = 0;
  for (let k = 1; k <= 41; k += 2) {
    sum += term / k;
    term *= s2;
  }
  return e * LN2_HI + (2 * sum + e * LN2_LO);
}

/** sin and cos of (pi/2) * r for r in [0, 1], by Taylor series (deterministic). */
function sinCosQuarter(r: number): [number, number] {
  const a = r * HALF_PI;
  const a2 = a * a;
  let sin = 0;
  let cos = 0;
  let ts = a; // a^(2k+1) / (2k+1)!
  let tc = 1; // a^(2k) / (2k)!
  for (let k = 0; k < 14; k++) {
    sin += ts;
    cos += tc;
    ts *= -a2 / ((2 * k + 2) * (2 * k + 3));
    tc *= -a2 / ((2 * k + 1) * (2 * k + 2));
  }
  return [sin, cos];
}

/** [sin(2*pi*u), cos(2*pi*u)] for u in [0, 1). */
export function detSinCos2Pi(u: number): [number, number] {
  const q4 = u * 4; // exact
  const quadrant = Math.floor(q4);
  const r = q4 - quadrant; // exact, in [0, 1)
  const [s, c] = sinCosQuarter(r);
  switch (quadrant & 3) {
    case 0:
      return [s, c];
    case 1:
      return [c, -s];
    case 2:
      return [-s, -c];
    default:
      return [-c, s];
  }
}

function splitmix32(state: number): () => number {
  let a = state | 0;
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let t = a ^ (a >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    t ^= t >>> 15;
    return t >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Seeded PRNG: xoshiro128** with standard-normal output via Box–Muller. */
export class SeededRandom {
  readonly seed: number;
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | null = null;

  constructor(seed: number) {
    assertSeed(seed);
    this.seed = seed;
    const sm = splitmix32(seed);
    this.s0 = sm() | 0;
    this.s1 = sm() | 0;
    this.s2 = sm() | 0;
    this.s3 = sm() | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // all-zero state is invalid
  }

  /** Next uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  /** One standard-normal value (float64, before fround). */
  private normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const u1 = (this.nextUint32() + 1) / TWO_POW_32; // (0, 1]
    const u2 = this.nextUint32() / TWO_POW_32; // [0, 1)
    const radius = Math.sqrt(-2 * detLog(u1));
    const [sin, cos] = detSinCos2Pi(u2);
    this.spare = radius * sin;
    return radius * cos;
  }

  /** `count` independent N(0, 1) samples as float32. */
  randn(count: number): Float32Array {
    if (!Number.isInteger(count) || count < 0) throw new Error(`randn: count must be a non-negative integer, got ${count}`);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = Math.fround(this.normal());
    return out;
  }
}

export function createRandom(seed: number): SeededRandom {
  return new SeededRandom(seed);
}
