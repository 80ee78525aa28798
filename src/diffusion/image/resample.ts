/**
 * Pillow's resampling of 8-bit images (Pillow 9.4 `ImagingResample` in libImaging/Resample.c, as
 * `Image.resize(size, filter)` runs it with no box and no reducing_gap), reproduced so that the
 * output is byte-identical. Bicubic is what CLIPImageProcessor uses for the safety checker;
 * Lanczos what diffusers' mask processor uses for masks of another size.
 *
 * - separable: a horizontal pass into an 8-bit intermediate holding only the rows the vertical
 *   pass reads, then a vertical pass (each pass skipped when that dimension does not change);
 * - the filter's support (bicubic a = -0.5: 2; Lanczos: 3) widened by the scale when downscaling;
 * - per output pixel the window [trunc(center - support + 0.5), trunc(center + support + 0.5))
 *   clamped to the image, weights evaluated at (x + xmin - center + 0.5) / filterscale and
 *   normalised to sum 1 in double precision;
 * - weights as fixed point with PRECISION_BITS = 22 (rounded half away from zero), sums started
 *   at 1 << 21 and clipped to 0..255 after an arithmetic shift right by 22.
 */

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

export type ResampleFilter = 'bicubic' | 'lanczos';

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

/** Pillow's lanczos_filter: the sinc truncated at 3 lobes. */
function lanczos(x: number): number {
  return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

const FILTERS: Record<ResampleFilter, { kernel: (x: number) => number; support: number }> = {
  bicubic: { kernel: bicubic, support: 2 },
  lanczos: { kernel: lanczos, support: 3 },
};

interface Coefficients {
  /** Weights per output position, `ksize` each (fixed point). */
  kk: Int32Array;
  /** [first input index, count] per output position. */
  bounds: Int32Array;
  ksize: number;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, inSize]. */
function coefficients(inSize: number, outSize: number, filter: ResampleFilter): Coefficients {
  const { kernel, support: base } = FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = base * filterscale;
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
      const w = kernel((x + xmin - center + 0.5) * ss);
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
  return resize(rgb, 3, width, height, outWidth, outHeight, 'bicubic');
}

/**
 * Resizes packed 8-bit pixels of `channels` bytes each (rows top to bottom) to `outWidth` x
 * `outHeight` exactly as Pillow 9.4's `Image.resize` does with that filter (mode L for 1 channel,
 * RGB for 3).
 */
export function resize(
  pixels: Uint8Array,
  channels: number,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
  filter: ResampleFilter,
): Uint8Array {
  if (pixels.length !== width * height * channels)
    throw new Error(`expected ${width * height * channels} bytes for ${width}x${height}x${channels}, got ${pixels.length}`);
  if (!(outWidth >= 1 && outHeight >= 1 && Number.isInteger(outWidth) && Number.isInteger(outHeight)))
    throw new Error(`bad output size ${outWidth}x${outHeight}`);
  if (outWidth === width && outHeight === height) return pixels.slice();
  const vert = coefficients(height, outHeight, filter);
  let src = pixels;
  let srcWidth = width;
  if (outWidth !== width) {
    // Only the rows the vertical pass reads: from the first window's start to the last one's end.
    const first = vert.bounds[0]!;
    const last = vert.bounds[outHeight * 2 - 2]! + vert.bounds[outHeight * 2 - 1]!;
    const rows = outHeight === height ? height : last - first;
    const offset = outHeight === height ? 0 : first;
    if (outHeight !== height) for (let i = 0; i < outHeight; i++) vert.bounds[i * 2] = vert.bounds[i * 2]! - first;
    src = pass(pixels, channels, width, rows, offset, coefficients(width, outWidth, filter), outWidth, 'horizontal');
    srcWidth = outWidth;
  }
  if (outHeight === height) return src;
  return pass(src, channels, srcWidth, outHeight, 0, vert, outHeight, 'vertical');
}

/** One separable pass: along rows (horizontal) or columns (vertical), every channel alike. */
function pass(
  src: Uint8Array,
  channels: number,
  width: number,
  rows: number,
  firstRow: number,
  { kk, bounds, ksize }: Coefficients,
  outSize: number,
  direction: 'horizontal' | 'vertical',
): Uint8Array {
  const horizontal = direction === 'horizontal';
  const outWidth = horizontal ? outSize : width;
  const outRows = horizontal ? rows : outSize;
  const out = new Uint8Array(outWidth * outRows * channels);
  const sums = new Float64Array(channels);
  for (let y = 0; y < outRows; y++) {
    for (let x = 0; x < outWidth; x++) {
      const at = horizontal ? x : y;
      const min = bounds[at * 2]!;
      const n = bounds[at * 2 + 1]!;
      const kOff = at * ksize;
      sums.fill(HALF);
      for (let i = 0; i < n; i++) {
        const w = kk[kOff + i]!;
        const p = horizontal ? ((y + firstRow) * width + i + min) * channels : ((i + min) * width + x) * channels;
        for (let c = 0; c < channels; c++) sums[c] = sums[c]! + src[p + c]! * w;
      }
      const o = (y * outWidth + x) * channels;
      for (let c = 0; c < channels; c++) out[o + c] = clip8(sums[c]!);
    }
  }
  return out;
}
