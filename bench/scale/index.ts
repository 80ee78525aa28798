/**
 * Scale-out (section 5 of `npm run bench`, or alone: `npx tsx bench/scale.ts`): the queue mode
 * as operators run it, on this machine. Two API replicas (src/main.ts, A and B) and `npm run
 * worker` processes (src/worker.ts, WORKER_CONCURRENCY=1), on PostgreSQL (a schema of the run's)
 * and Redis (a REDIS_PREFIX of the run's), the local engine on the tiny models A builds in a
 * fresh DATA_DIR, one API key with the per-key limits off. Every process, the database and Redis
 * share the machine's cores, so each figure comes with who used them.
 *
 * 1. Jobs per minute with 1 and with 2 workers: BENCH_SCALE_JOBS (48) text2image jobs
 *    (BENCH_SCALE_SIZE 64 px, BENCH_SCALE_STEPS 8) created at once on A, timed from the first
 *    create sent to the last end announced on Redis (the `finished` channel, as replicas hear
 *    it); every job is read back (SUCCESS, its engine startedAt..finishedAt). Each worker first
 *    runs a job of that size (its first loads the models). Once with the workers' poll interval
 *    of the engine at its default (POLL_MIN_INTERVAL_MS 250: a job's steps and end are seen at
 *    most that often) and once at 5..20 ms (as the queue tests run), where the jobs' own work and
 *    its writes decide. Beside each: CPU % of one core per process (A, B, each worker, this
 *    client, every postgres and redis-server process, the rest of the machine) from /proc, and
 *    the run queue (runnable threads, sampled every 100 ms) against the cores.
 *
 * 2. Queue latency, under light load: BENCH_SCALE_LATENCY_JOBS (30) jobs created on A one at a
 *    time, each after the last ended, so the queue is empty and the workers idle: from the job's
 *    createdAt (stamped on A) to the worker's own "running the job" log line (its time, taken
 *    when BullMQ handed the job over and the worker read it from the store), and to startedAt
 *    (the local engine's start of the generation). Same machine, one clock; both are ms.
 *
 * 3. Event latency, worker -> a jobStatus subscriber (graphql-ws, FollowJob) on replica B for
 *    those same jobs: per event, from when this process's own Redis subscriber (PSUBSCRIBE on the
 *    job channels) got the worker's publication to when B's subscriber here got the value with
 *    that status and step. Both clocks are this process's. Not included: the worker -> Redis hop
 *    of the PUBLISH itself (one loopback write; Redis sends to both subscribers at once). Only
 *    events published after Redis reports B subscribed to the job's channel (PUBSUB NUMSUB) and
 *    after B's first value count: earlier ones reach B by its re-read of the store, not pub/sub.
 *    Target: median under 20 ms on loopback.
 *
 * 4. Mutation throughput with Postgres: bench/throughput.ts's runs (section 1's settings:
 *    BENCH_CONCURRENCY, BENCH_WARMUP_MS, BENCH_DURATION_MS) S1 bare yoga, S2 ours embedded
 *    (SQLite, FULL), S3 ours with DATABASE_URL (a fresh schema), S4 ours with DATABASE_URL and
 *    REDIS_URL (queue mode: each create is also added to BullMQ, and nothing takes them), S5 bare
 *    yoga again; ratios against the mean of S1 and S5. BENCH_SCALE_THROUGHPUT=0 skips them.
 *
 * Knobs: options.ts. Without PostgreSQL or Redis the section is skipped (said so), not failed.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ThroughputSettings } from '../throughput.js';
import { scaleOptionsFromEnv } from './options.js';
import { printScaleReport, scaleSummaryRows } from './report.js';
import { runScale } from './run.js';

export { scaleOptionsFromEnv, type ScaleOptions } from './options.js';
export { printScaleReport, scaleSummaryRows } from './report.js';
export { runScale, type ScaleResult } from './run.js';

/** Section 1's throughput settings, from the same variables (for the section run alone). */
export function throughputSettingsFromEnv(): ThroughputSettings {
  const num = (name: string, fallback: number) => {
    const v = Number(process.env[name]);
    return Number.isFinite(v) && v > 0 ? v : fallback;
  };
  return {
    concurrency: num('BENCH_CONCURRENCY', 32),
    warmupMs: num('BENCH_WARMUP_MS', 2_000),
    durationMs: num('BENCH_DURATION_MS', 10_000),
    hold: (process.env.BENCH_UPSTREAM ?? 'hold') !== 'complete',
  };
}

/** The section alone, with its own SUMMARY table. */
export async function scaleCli(): Promise<void> {
  const t0 = performance.now();
  process.env.BENCH_STOP_LIMIT_MS ??= '3000';
  console.log(
    `Scale-out: ${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? '?'}), node ${process.version}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const result = await runScale(scaleOptionsFromEnv(), throughputSettingsFromEnv());
  printScaleReport(result);
  const rows = scaleSummaryRows(result);
  const w = [Math.max(...rows.map((x) => x[0].length)) + 2, Math.max(...rows.map((x) => x[1].length)) + 2, 16];
  console.log();
  console.log(`SUMMARY (total ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  for (const [a, b, c, d] of rows) console.log(`${a.padEnd(w[0]!)}${b.padEnd(w[1]!)}${c.padEnd(w[2]!)}${d}`);
}

// The whole path, not the file name: bench/index.ts is an index.ts too, and must not start this.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await scaleCli();
