import type { MemorySample } from './sampler.js';

/**
 * "No growth trend": least-squares slope over the second half of the load (after warm-up: the
 * ONNX sessions load on the first job and RSS jumps by ~200 MB), in MB per minute, of
 *   - RSS (/proc VmRSS after a full GC): everything, native memory included (ONNX Runtime's
 *     arenas, the allocator's free pages, SQLite), but noisy: it moves by ~10 MB between samples,
 *     so over the default 90 s window (9 samples) the slope's standard error is ~5-7 MB/min,
 *     printed as "±"; a longer BENCH_SOAK_MS narrows it (as duration^-1.5);
 *   - heap + external of the main thread after a full GC: only what JS keeps reachable (job
 *     objects, Buffers of images), but smoother (standard error 1.5-4.5 MB/min in 3-minute runs
 *     here, most of it one step down when the dispatcher compacts its queue), so this is the row
 *     that catches retention of per-job data.
 * Limit 5 MB/min for both: 300 MB an hour, which would exhaust a small container within hours,
 * while a server that only churns should stay within a couple of MB/min of flat. A bounded
 * retention longer than the window (a cache or a TTL of minutes) also shows as a MISS here; run
 * with a BENCH_SOAK_MS longer than that retention to see whether it levels off.
 */
export const RSS_SLOPE_LIMIT_MB_PER_MIN = 5;

export interface Fit {
  slope: number;
  se: number;
}

/** Least-squares slope of y over x, and its standard error (NaN with fewer than 3 points). */
export function fit(xs: number[], ys: number[]): Fit {
  const n = xs.length;
  if (n < 3) return { slope: NaN, se: NaN };
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i]! - mx) ** 2;
    sxy += (xs[i]! - mx) * (ys[i]! - my);
  }
  if (sxx === 0) return { slope: NaN, se: NaN };
  const b = sxy / sxx;
  let sse = 0;
  for (let i = 0; i < n; i++) sse += (ys[i]! - my - b * (xs[i]! - mx)) ** 2;
  return { slope: b, se: n > 2 ? Math.sqrt(sse / (n - 2) / sxx) : NaN };
}

/** The trends over the load samples taken from `fromS` (seconds) on, in MB per minute. */
export function memoryTrends(samples: MemorySample[], fromS: number) {
  const window = samples.filter((m) => m.phase === 'load' && m.atS >= fromS);
  const minutes = window.map((m) => m.atS / 60);
  return {
    window,
    rss: fit(
      minutes,
      window.map((m) => m.rssMb),
    ),
    heapSlope: fit(
      minutes,
      window.map((m) => m.heapMb),
    ).slope,
    heapExt: fit(
      minutes,
      window.map((m) => m.heapMb + m.externalMb),
    ),
  };
}

export const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');

/** PASS / MISS against the limit; fewer than 3 samples in the window (a short BENCH_SOAK_MS): no trend to judge. */
export const trendVerdict = (slope: number) => (Number.isFinite(slope) ? verdict(slope < RSS_SLOPE_LIMIT_MB_PER_MIN) : 'n/a (run longer)');
