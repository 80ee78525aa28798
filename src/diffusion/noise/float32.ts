/**
 * Single-precision arithmetic in JavaScript: every operation rounds its exact double result to
 * float32 (exact for + - * of floats, since the double result is then correctly rounded once),
 * and fma32 rounds a*b+c once, as the FMA instruction does.
 */

export const f32 = Math.fround;

const bits = new Float32Array(1);
const bitsInt = new Int32Array(bits.buffer);

export function floatBits(x: number): number {
  bits[0] = x;
  return bitsInt[0]!;
}

export function bitsFloat(i: number): number {
  bitsInt[0] = i;
  return bits[0]!;
}

/** round32(a * b + c) with one rounding, for float32 a, b, c. */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b; // exact: 24 + 24 significant bits fit a double
  const s = p + c;
  const r = f32(s);
  // s itself may be rounded; that matters only when s sits exactly halfway between two floats.
  const bb = s - p;
  const err = p - (s - bb) + (c - bb);
  if (err === 0 || r === s) return r;
  const half = s - r;
  const other = f32(r + 2 * half);
  if (other === r || Math.abs(other - r) !== 2 * Math.abs(half)) return r;
  // s is a tie: the exact value lies on err's side of it.
  return Math.sign(err) === Math.sign(half) ? other : r;
}
