/**
 * Pillow's bicubic resampling of 8-bit RGB images (Pillow 9.4 `ImagingResample` in
 * libImaging/Resample.c, as `Image.resize(size, Image.BICUBIC)` runs it with no box and no
 * reducing_gap), reproduced so that the output is byte-identical:
 *
 * - separable: a horizontal pass into an 8-bit intermediate holding only the rows the vertical
 *   pass reads, then a vertical pass (each pass skipped when that dimension does not change);
 * - the bicubic kernel with a = -0.5, support 2, widened by the scale when downscaling;
 * - per output pixel the window [trunc(center - support + 0.5), trunc(center + support + 0.5))
 *   clamped to the image, weights evaluated at (x + xmin - center + 0.5) / filterscale and
 *   normalised to sum 1 in double precision;
 * - weights as fixed point with PRECISION_BITS = 22 (rounded half away from zero), sums started
 *   at 1 << 21 and clipped to 0..255 after an arithmetic shift right by 22.
 */

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coefficients {
  /** Weights per output position, `ksize` each (fixed point). */
  kk: Int32Array;
  /** [first input index, count] per output position. */
  bounds: Int32Array;
  ksize: number;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, inSize]. */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Int32Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      // C's (int) cast truncates toward zero after adding ±0.5.
      kk[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * ONE : 0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { kk, bounds, ksize };
}

function clip8(sum: number): number {
  const v = Math.floor(sum / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Resizes packed 8-bit RGB (`width * height * 3` bytes, rows top to bottom) to `outWidth` x
 * `outHeight` exactly as Pillow 9.4's `Image.resize(..., Image.BICUBIC)` does.
 */
export function resizeBicubicRgb(rgb: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  if (rgb.length !== width * height * 3)
    throw new Error(`expected ${width * height * 3} bytes for ${width}x${height} RGB, got ${rgb.length}`);
  if (!(outWidth >= 1 && outHeight >= 1 && Number.isInteger(outWidth) && Number.isInteger(outHeight)))
    throw new Error(`bad output size ${outWidth}x${outHeight}`);
  if (outWidth === width && outHeight === height) return rgb.slice();
  const horiz = coefficients(width, outWidth);
  const vert = coefficients(height, outHeight);
  let src = rgb;
  let srcWidth = width;
  if (outWidth !== width) {
    // Only the rows the vertical pass reads: from the first window's start to the last one's end.
    const first = vert.bounds[0]!;
    const last = vert.bounds[outHeight * 2 - 2]! + vert.bounds[outHeight * 2 - 1]!;
    const rows = last - first;
    for (let i = 0; i < outHeight; i++) vert.bounds[i * 2] = vert.bounds[i * 2]! - first;
    const tmp = new Uint8Array(outWidth * rows * 3);
    const { kk, bounds, ksize } = horiz;
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + first) * width * 3;
      const rowOut = y * outWidth * 3;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = bounds[xx * 2]!;
        const n = bounds[xx * 2 + 1]!;
        const kOff = xx * ksize;
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        for (let x = 0; x < n; x++) {
          const w = kk[kOff + x]!;
          const p = rowIn + (x + xmin) * 3;
          s0 += src[p]! * w;
          s1 += src[p + 1]! * w;
          s2 += src[p + 2]! * w;
        }
        tmp[rowOut + xx * 3] = clip8(s0);
        tmp[rowOut + xx * 3 + 1] = clip8(s1);
        tmp[rowOut + xx * 3 + 2] = clip8(s2);
      }
    }
    src = tmp;
    srcWidth = outWidth;
  }
  if (outHeight === height) return src;
  const out = new Uint8Array(srcWidth * outHeight * 3);
  const { kk, bounds, ksize } = vert;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2]!;
    const n = bounds[yy * 2 + 1]!;
    const kOff = yy * ksize;
    for (let xx = 0; xx < srcWidth; xx++) {
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let y = 0; y < n; y++) {
        const w = kk[kOff + y]!;
        const p = ((y + ymin) * srcWidth + xx) * 3;
        s0 += src[p]! * w;
        s1 += src[p + 1]! * w;
        s2 += src[p + 2]! * w;
      }
      const o = (yy * srcWidth + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}
