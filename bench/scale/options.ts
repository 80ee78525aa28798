/**
 * The scale-out section's knobs (environment):
 *   BENCH_SCALE_JOBS (48)            text2image jobs per batch (jobs per minute), created all at once
 *   BENCH_SCALE_SIZE (64)            their width and height (a multiple of 8, 64..1024)
 *   BENCH_SCALE_STEPS (8)            their numInferenceSteps
 *   BENCH_SCALE_WORKERS (1,2,1,2)    worker processes per batch, in the order run (alternated, so that a
 *                                    change in the machine's load between batches shows)
 *   BENCH_SCALE_POLL (both)          the workers' poll interval of the engine: default (POLL_MIN_INTERVAL_MS
 *                                    250, the shipped default), fast (5..20 ms, as the queue tests set it), both
 *   BENCH_SCALE_LATENCY_JOBS (30)    jobs created one at a time (an empty queue) for the latencies
 *   BENCH_SCALE_THROUGHPUT=0         skips the mutation throughput runs (Postgres, Postgres + Redis)
 *   BENCH_DATABASE_URL               the PostgreSQL to make the bench's schemas in
 *                                    (default postgres://postgres@127.0.0.1:5432/test; DATABASE_URL is not read)
 *   BENCH_REDIS_URL                  the Redis to queue on, under a prefix of the run's (default redis://127.0.0.1:6379)
 * BENCH_SCALE=0 (read by bench/index.ts) skips the section in `npm run bench`.
 */

export type PollMode = 'default' | 'fast';

export interface ScaleOptions {
  jobs: number;
  size: number;
  steps: number;
  workers: number[];
  polls: PollMode[];
  latencyJobs: number;
  /** The latency jobs: longer, so that a subscriber sees several steps of each. */
  latencySize: number;
  latencySteps: number;
  throughput: boolean;
  databaseUrl: string;
  redisUrl: string;
}

const num = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

/** The workers' poll settings per mode: what `default` leaves unset, `fast` sets as the queue tests do. */
export const POLL_ENV: Record<PollMode, Record<string, string>> = {
  default: {},
  fast: { POLL_MIN_INTERVAL_MS: '5', POLL_MAX_INTERVAL_MS: '20' },
};
export const POLL_LABEL: Record<PollMode, string> = {
  default: 'poll 250 ms (default)',
  fast: 'poll 5-20 ms',
};

export function scaleOptionsFromEnv(): ScaleOptions {
  const size = Math.round(num('BENCH_SCALE_SIZE', 64) / 8) * 8;
  const workers = (process.env.BENCH_SCALE_WORKERS ?? '1,2,1,2')
    .split(',')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n >= 1 && n <= 8);
  const poll = process.env.BENCH_SCALE_POLL ?? 'both';
  return {
    jobs: Math.round(num('BENCH_SCALE_JOBS', 48)),
    size: Math.min(1024, Math.max(64, size)),
    steps: Math.round(num('BENCH_SCALE_STEPS', 8)),
    workers: workers.length > 0 ? workers : [1, 2, 1, 2],
    polls: poll === 'default' || poll === 'fast' ? [poll] : ['default', 'fast'],
    latencyJobs: Math.round(num('BENCH_SCALE_LATENCY_JOBS', 30)),
    latencySize: 256,
    latencySteps: 20,
    throughput: process.env.BENCH_SCALE_THROUGHPUT !== '0',
    databaseUrl: process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    redisUrl: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  };
}
