import { type FloatDType, problem } from './types.js';

export const FLOAT_DTYPE_BYTES: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2 };

const scratch = new DataView(new ArrayBuffer(4));

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function bf16ToFloat(h: number): number {
  scratch.setUint32(0, ((h & 0xffff) << 16) >>> 0);
  return scratch.getFloat32(0);
}

/** Reads element `index` (little-endian) of a `dtype` array that starts at `bytes[0]`. Caller bounds-checks. */
export function elementReader(bytes: Uint8Array, dtype: FloatDType): (index: number) => number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32':
      return (i) => view.getFloat32(i * 4, true);
    case 'F16':
      return (i) => halfToFloat(view.getUint16(i * 2, true));
    case 'BF16':
      return (i) => bf16ToFloat(view.getUint16(i * 2, true));
  }
}

/** Converts a contiguous little-endian array of `n` elements to float32. */
export function toFloat32(bytes: Uint8Array, dtype: FloatDType, n: number): Float32Array {
  if (bytes.byteLength !== n * FLOAT_DTYPE_BYTES[dtype]) {
    throw problem(`tensor data is ${bytes.byteLength} bytes; ${n} ${dtype} values need ${n * FLOAT_DTYPE_BYTES[dtype]}`);
  }
  const read = elementReader(bytes, dtype);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = read(i);
  return out;
}
