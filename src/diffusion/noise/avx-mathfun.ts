/**
 * One lane of log256_ps and sincos256_ps from avx_mathfun.h (Giovanni Garberoglio's AVX port of
 * Julien Pommier's sse_mathfun, Cephes polynomials), which torch's AVX2 normal kernel uses:
 * the same float32 operations in the same order, with the multiply-adds GCC contracts into FMA
 * instructions in that kernel's build (-mfma) done as single-rounding fma32.
 */
import { bitsFloat, f32, floatBits, fma32 } from './float32.js';

const SQRTHF = f32(0.7071067811865476); // cephes_SQRTHF 0.707106781186547524;
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
  3.3333331174e-1,
].map(f32);
const LOG_Q1 = f32(-2.1219444e-4);
const LOG_Q2 = f32(0.693359375);
const MIN_NORM_POS = bitsFloat(0x00800000);

/** log256_ps for one positive float32 lane. */
export function logAvx(value: number): number {
  let x = Math.max(f32(value), MIN_NORM_POS);
  const b = floatBits(x);
  let e = f32((b >>> 23) - 0x7f + 1);
  x = bitsFloat((b & ~0x7f800000) | floatBits(0.5));
  const below = x < SQRTHF;
  const tmp = below ? x : 0;
  x = f32(x - 1);
  if (below) e = f32(e - 1);
  x = f32(x + tmp);
  const z = f32(x * x);
  let y = LOG_P[0]!;
  for (let i = 1; i < LOG_P.length; i++) y = fma32(y, x, LOG_P[i]!);
  y = f32(y * x);
  y = fma32(y, z, f32(e * LOG_Q1));
  y = f32(y - f32(z * 0.5)); // z * 0.5 is exact: fused or not, the same
  x = f32(x + y);
  return fma32(e, LOG_Q2, x); // e * LOG_Q2 is exact too
}

const FOPI = f32(1.27323954473516);
const DP1 = f32(-0.78515625);
const DP2 = f32(-2.4187564849853515625e-4);
const DP3 = f32(-3.774894977445941e-8); // 3.77489497744594108e-8 in the C source;
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f32);
const COS_P = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f32);

/** sincos256_ps for one float32 lane: [sin, cos]. */
export function sinCosAvx(value: number): [number, number] {
  let x = Math.abs(f32(value));
  let sinNegative = value < 0;
  // j = (int(x * 4/pi) + 1) & ~1
  let j = Math.trunc(f32(x * FOPI));
  j = (j + 1) & ~1;
  const y = j; // exact as a float for the small j here
  if (j & 4) sinNegative = !sinNegative;
  const sinPoly = (j & 2) === 0; // the sine polynomial gives the sine (else the cosine one does)
  const cosNegative = ((j - 2) & 4) === 0;
  x = fma32(y, DP1, x);
  x = fma32(y, DP2, x);
  x = fma32(y, DP3, x);
  const z = f32(x * x);
  let c = COS_P[0]!;
  c = fma32(c, z, COS_P[1]!);
  c = fma32(c, z, COS_P[2]!);
  c = f32(c * z);
  c = fma32(c, z, -f32(z * 0.5));
  c = f32(c + 1);
  let s = SIN_P[0]!;
  s = fma32(s, z, SIN_P[1]!);
  s = fma32(s, z, SIN_P[2]!);
  s = f32(s * z);
  s = fma32(s, x, x);
  const sinAbs = sinPoly ? s : c;
  const cosAbs = sinPoly ? c : s;
  return [sinNegative ? -sinAbs : sinAbs, cosNegative ? -cosAbs : cosAbs];
}
