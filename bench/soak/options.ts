/**
 * The soak's knobs (environment) and the server limits it is built around.
 *   BENCH_SOAK_MS (180000)        length of the load
 *   BENCH_SOAK_KEYS (20)          API keys loading the server at once (at least 2)
 *   BENCH_SOAK_RATE (8)           jobs/s offered by the steady clients, all keys together
 *   BENCH_SOAK_DRAIN_MS (180000)  how long every accepted job has to end after the load
 *   BENCH_SOAK_SAMPLE_MS (10000)  server memory sampling period
 *   BENCH_SOAK_STORM_MS (20000)   period of the storms against one key's limits
 *   BENCH_SOAK_SIZES              fixed image sides (e.g. "128" or "64,256") instead of 64..256
 *   BENCH_SOAK_SERVER_LOG=FILE    everything the server printed
 *   BENCH_SOAK_HEAP_SNAPSHOTS=DIR server heap snapshots at 1/3 and at the end of the load
 * BENCH_SOAK=0 (read by bench/index.ts) skips the soak in `npm run bench`.
 */

export interface SoakOptions {
  durationMs: number;
  keys: number;
  /** Jobs per second offered by the steady clients, all keys together. */
  rate: number;
  drainMs: number;
  sampleMs: number;
  stormEveryMs: number;
}

const num = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

export function soakOptionsFromEnv(): SoakOptions {
  return {
    durationMs: num('BENCH_SOAK_MS', 180_000),
    keys: Math.max(2, Math.round(num('BENCH_SOAK_KEYS', 20))),
    rate: num('BENCH_SOAK_RATE', 8),
    drainMs: num('BENCH_SOAK_DRAIN_MS', 180_000),
    sampleMs: num('BENCH_SOAK_SAMPLE_MS', 10_000),
    stormEveryMs: num('BENCH_SOAK_STORM_MS', 20_000),
  };
}

/** BENCH_SOAK_SIZES: image sides the server accepts (multiples of 8, 64..1024); empty: random 64..256. */
export function soakSizesFromEnv(): number[] {
  return (process.env.BENCH_SOAK_SIZES ?? '')
    .split(',')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n >= 64 && n <= 1024 && n % 8 === 0);
}

// Read when used, not once, as before the split: a caller that sets them late still gets them.
export const serverLogFile = (): string | undefined => process.env.BENCH_SOAK_SERVER_LOG;
export const heapSnapshotDir = (): string | undefined => process.env.BENCH_SOAK_HEAP_SNAPSHOTS;

/**
 * The per-key limits the load and the storms are sized against: the server's documented
 * defaults, set explicitly so that a change of default does not silently change the soak.
 */
export const LIMITS = {
  RATE_LIMIT_JOBS_PER_MINUTE: '120',
  RATE_LIMIT_JOBS_BURST: '30',
  MAX_ACTIVE_JOBS_PER_KEY: '100',
  WS_MAX_CONNECTIONS_PER_KEY: '50',
  WS_MAX_SUBSCRIPTIONS_PER_KEY: '500',
};

export const MB = 1024 * 1024;
