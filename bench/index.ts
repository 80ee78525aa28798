/**
 * npm run bench: performance figures for this server. Not a test: it prints, it does not assert
 * (the exit code is non-zero only if the benchmark itself could not run).
 *
 * 1. Throughput ratio. Closed-loop load from one undici Pool (BENCH_CONCURRENCY requests in flight,
 *    default 32) for BENCH_DURATION_MS (default 10 s) after BENCH_WARMUP_MS (default 2 s), against
 *      - baseline: a bare graphql-yoga server (createYoga + node:http) whose only mutation is
 *        echo(n: Int!): Int!;
 *      - ours: buildApp() with a fresh temp DATA_DIR, LOG_LEVEL=silent and otherwise default
 *        settings, its imagepipeline engine pointed at the FakeImagePipeline test fixture, sending
 *        the CreateText2Image document from src/client/generated (id, status, queuePosition, seed,
 *        createdAt: what a client reads before it subscribes to jobStatus). Run D sends Text2Image
 *        with the whole JobFields fragment instead, for information.
 *    Runs alternate baseline, ours, baseline, ours, each on freshly started servers; the ratio is
 *    mean(ours req/s) / mean(baseline req/s), target >= 0.7. Then ours once more with
 *    SQLITE_SYNCHRONOUS=NORMAL (ratio labelled as such; FULL is the default and the headline).
 *    Every reply is checked (HTTP 200, no errors, a job id / the echoed number) and failures are
 *    counted. Latency is per request, from send to full body, for requests sent inside the window.
 *    By default the fake upstream HOLDS every job queued (BENCH_UPSTREAM=hold), so jobs stay
 *    PENDING and are polled; BENCH_UPSTREAM=complete lets them run to SUCCESS (images downloaded
 *    and stored). An extra informational run with the other mode is printed when BENCH_EXTRA=1.
 *
 * 2. Memory per open jobStatus subscription. The server runs in a child process and reports
 *    process.memoryUsage() after global.gc() twice. After BENCH_SUBS (default 1,000) jobs were
 *    created (the upstream holds them, so they never finish) we take a baseline, open one
 *    subscription per job, wait for every first value, and measure again:
 *      per subscription = (open - baseline) / subscriptions, on heapUsed + external (external
 *      already includes arrayBuffers, so they are not added twice), and on rss (noisier: the
 *      allocator keeps freed pages). Target < 50 KB each.
 *    Layouts: 1,000 sockets x 1 subscription (the realistic one, the headline) and 10 sockets x
 *    100 subscriptions (multiplexed). After closing, the server's listener and socket counts must
 *    return to 0.
 *
 * 3. The local engine on its models: seconds per step, share outside session.run, peak memory, and
 *    the cost of a watched live preview (per step in the loop, and encoding one).
 *
 * 4. Soak (bench/soak/, also runnable alone: npx tsx bench/soak/index.ts): BENCH_SOAK_MS (default
 *    180 s) of mixed GraphQL / REST / WebSocket load from 20 keys against src/main.ts with the local
 *    engine and the default per-key limits; every accepted job must end with its images (0 lost),
 *    errors counted by code, server memory sampled for a growth trend. BENCH_SOAK=0 skips it.
 *
 * 5. Scale-out (bench/scale/, also runnable alone: npx tsx bench/scale.ts), on PostgreSQL and
 *    Redis (a schema and a REDIS_PREFIX of the run's, removed after; BENCH_DATABASE_URL and
 *    BENCH_REDIS_URL, default the local ones; skipped, and said so, where they do not answer):
 *    two API replicas (src/main.ts) and `npm run worker` processes (WORKER_CONCURRENCY=1) on the
 *    tiny models. Jobs per minute with 1 and 2 workers on a batch of BENCH_SCALE_JOBS (48) small
 *    text2image jobs created at once, with the workers' default poll interval and with 5-20 ms,
 *    beside each process's CPU and the run queue (everything shares the cores); queue latency
 *    (createdAt -> the worker taking the job, and -> the engine starting it) and event latency
 *    (worker -> a jobStatus subscriber on the other replica) on BENCH_SCALE_LATENCY_JOBS (30)
 *    jobs one at a time; and section 1's mutation throughput with Postgres and with Postgres +
 *    Redis against bare yoga, beside the embedded (SQLite) server, in one block of runs.
 *    BENCH_SCALE=0 skips it; its other knobs are in bench/scale/options.ts.
 *
 * Knobs (environment): BENCH_CONCURRENCY, BENCH_WARMUP_MS, BENCH_DURATION_MS, BENCH_UPSTREAM
 * (hold|complete), BENCH_EXTRA=1, BENCH_SUBS, BENCH_MULTIPLEX=0, BENCH_STOP_LIMIT_MS (default 3000),
 * BENCH_NODE_ARGS (extra node flags for the server processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"),
 * BENCH_SOAK=0, BENCH_SOAK_MS and the other BENCH_SOAK_* knobs described in bench/soak/options.ts,
 * BENCH_SCALE=0, BENCH_SCALE_JOBS, BENCH_SCALE_LATENCY_JOBS, BENCH_SCALE_POLL (default|fast|both),
 * BENCH_SCALE_THROUGHPUT=0 and the other BENCH_SCALE_* knobs described in bench/scale/options.ts.
 *
 * Reading the figures: every server, the fake upstream and the client are separate processes on
 * the same machine (2 cores here), so the CPU column shows who had the cores: server% near 100 is a
 * saturated server; a client% that is high means the client limited the figure. Runs are short
 * and the machine may be shared, so compare runs of the same invocation, not across invocations.
 */
import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';
import type { LocalEngineFigures } from './local-engine.js';
import { fmt, pad, printRun, RUN_HEADER } from './lib/format.js';
import { concat, percentile } from './lib/load.js';
import { printScaleReport, runScale, scaleOptionsFromEnv, scaleSummaryRows } from './scale/index.js';
import { printSoakReport, runSoak, soakOptionsFromEnv, soakSummaryRows } from './soak/index.js';
import { runSubscriptionMemory, type MemoryResult } from './subscriptions.js';
import { runBaseline, runOurs, type RunResult, type ThroughputSettings } from './throughput.js';

const env = process.env;
const num = (name: string, fallback: number) => {
  const v = Number(env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
};

const settings: ThroughputSettings = {
  concurrency: num('BENCH_CONCURRENCY', 32),
  warmupMs: num('BENCH_WARMUP_MS', 2_000),
  durationMs: num('BENCH_DURATION_MS', 10_000),
  hold: (env.BENCH_UPSTREAM ?? 'hold') !== 'complete',
};
const SUBS = num('BENCH_SUBS', 1_000);
const MULTIPLEX = env.BENCH_MULTIPLEX !== '0';
const EXTRA = env.BENCH_EXTRA === '1';
// A stop that hangs is reported; the bench does not wait long for it.
env.BENCH_STOP_LIMIT_MS ??= '3000';

const RATIO_TARGET = 0.7;
const SUB_TARGET_KB = 50;

const KB = 1024;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const upstreamMode = (hold: boolean) =>
  hold ? 'upstream HOLDS jobs (stay PENDING, polled)' : 'upstream COMPLETES jobs (SUCCESS, images stored)';

const t0 = performance.now();
const elapsed = () => `${fmt((performance.now() - t0) / 1000, 1)} s`;

console.log('SD 1.5 GraphQL API benchmark');
console.log(
  `machine: ${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? '?'}), node ${process.version}, ` +
    `load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
);
console.log(
  `throughput: ${settings.concurrency} in flight, ${settings.warmupMs / 1000} s warm-up + ${settings.durationMs / 1000} s measured per run; ` +
    `ours: default settings (SQLITE_SYNCHRONOUS=FULL unless stated), ${upstreamMode(settings.hold)}`,
);
console.log();

// ---------------------------------------------------------------------------------------------
// 1. Throughput
// ---------------------------------------------------------------------------------------------

console.log('1. Throughput: text2image through this server vs echo through bare graphql-yoga');
console.log(RUN_HEADER);

const baselines: RunResult[] = [];
const ours: RunResult[] = [];
for (let round = 1; round <= 2; round++) {
  const b = await runBaseline(`A${round} baseline (yoga echo)`, settings);
  printRun(b);
  baselines.push(b);
  const o = await runOurs(`B${round} ours text2image (FULL)`, settings);
  printRun(o);
  ours.push(o);
}
const normal = await runOurs('C  ours text2image (NORMAL)', settings, { SQLITE_SYNCHRONOUS: 'NORMAL' });
printRun(normal);
const full = await runOurs('D  ours, whole JobFields (FULL)', settings, {}, 'full');
printRun(full);
let extra: RunResult | null = null;
if (EXTRA) {
  const other = { ...settings, hold: !settings.hold };
  extra = await runOurs(`E  ours FULL, ${other.hold ? 'upstream holds' : 'upstream completes'}`, other);
  printRun(extra);
}

const baseRps = mean(baselines.map((r) => r.rps));
const oursRps = mean(ours.map((r) => r.rps));
const ratio = oursRps / baseRps;
const ratioNormal = normal.rps / baseRps;
const pairRatios = ours.map((o, i) => o.rps / baselines[i]!.rps);
const baseLat = concat(baselines.map((r) => r.latencies));
const oursLat = concat(ours.map((r) => r.latencies));
const throughputErrors = [...baselines, ...ours, normal, ...(extra ? [extra] : [])].reduce((n, r) => n + r.errors + r.warmupErrors, 0);
const stopsHung = [...ours, normal, ...(extra ? [extra] : [])].filter((r) => r.stop && !r.stop.stopped).length;
console.log(
  `ratio ours/baseline (FULL): ${fmt(ratio, 3)} (per pair: ${pairRatios.map((x) => fmt(x, 3)).join(', ')}); ` +
    `with SQLITE_SYNCHRONOUS=NORMAL: ${fmt(ratioNormal, 3)}   [${elapsed()}]`,
);
console.log();

// ---------------------------------------------------------------------------------------------
// 2. Memory per subscription
// ---------------------------------------------------------------------------------------------

console.log(`2. Memory per open jobStatus subscription (server in its own process, after gc() x2; ${SUBS} jobs held PENDING)`);
const layouts = [{ label: `${SUBS} sockets x 1 subscription`, sockets: SUBS, perSocket: 1 }];
if (MULTIPLEX && SUBS % 10 === 0) layouts.push({ label: `10 sockets x ${SUBS / 10} subscriptions`, sockets: 10, perSocket: SUBS / 10 });
const memory: MemoryResult = await runSubscriptionMemory({ jobs: SUBS, layouts });
const mb = (b: number) => `${fmt(b / KB / KB, 1)} MB`;
for (const l of memory.layouts) {
  console.log(`  ${l.label}: opened in ${fmt(l.openMs)} ms, ${l.firstValues}/${l.subscriptions} first values, ${l.errors} errors`);
  for (const e of l.errorSamples) console.log(`    error sample: ${e}`);
  console.log(
    `    before: heap ${mb(l.before.heapUsed)} + external ${mb(l.before.external)} (arrayBuffers ${mb(l.before.arrayBuffers)}), rss ${mb(l.before.rss)}; ` +
      `listeners ${l.before.listeners}, sockets ${l.before.sockets}`,
  );
  console.log(
    `    open:   heap ${mb(l.open.heapUsed)} + external ${mb(l.open.external)} (arrayBuffers ${mb(l.open.arrayBuffers)}), rss ${mb(l.open.rss)}; ` +
      `listeners ${l.open.listeners}, sockets ${l.open.sockets}`,
  );
  console.log(
    `    per subscription: ${fmt(l.perSubHeapExt / KB, 1)} KB (heap+external), ${fmt(l.perSubRss / KB, 1)} KB (rss); ` +
      `per socket (heap+external): ${fmt((l.perSubHeapExt * l.subscriptions) / l.sockets / KB, 1)} KB`,
  );
  console.log(
    `    after closing: listeners ${l.after.listeners}, sockets ${l.after.sockets} (in ${fmt(l.drainedMs)} ms); ` +
      `heap+external ${fmt((l.after.heapUsed + l.after.external - l.before.heapUsed - l.before.external) / KB)} KB vs before`,
  );
}
if (memory.stop && !memory.stop.stopped) console.log(`  app.stop() still pending after ${memory.stop.ms} ms`);
console.log(`  [${elapsed()}]`);
console.log();

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
const rows: [string, string, string, string][] = [
  ['bare yoga echo, mean of A1 A2', `${fmt(baseRps)} req/s`, '', ''],
  [`  latency p50 / p99`, `${fmt(percentile(baseLat, 0.5), 1)} / ${fmt(percentile(baseLat, 0.99), 1)} ms`, '', ''],
  ['ours text2image (FULL), mean of B1 B2', `${fmt(oursRps)} req/s`, '', ''],
  [`  latency p50 / p99`, `${fmt(percentile(oursLat, 0.5), 1)} / ${fmt(percentile(oursLat, 0.99), 1)} ms`, '', ''],
  ['throughput ratio ours/baseline (FULL)', fmt(ratio, 3), `>= ${RATIO_TARGET}`, verdict(ratio >= RATIO_TARGET)],
  ['ours text2image (SQLITE_SYNCHRONOUS=NORMAL)', `${fmt(normal.rps)} req/s`, '', ''],
  ['  latency p50 / p99', `${fmt(percentile(normal.latencies, 0.5), 1)} / ${fmt(percentile(normal.latencies, 0.99), 1)} ms`, '', ''],
  ['throughput ratio, NORMAL (labelled, not default)', fmt(ratioNormal, 3), `>= ${RATIO_TARGET}`, verdict(ratioNormal >= RATIO_TARGET)],
];
rows.push(['ratio, Text2Image with the whole JobFields selection (info)', fmt(full.rps / baseRps, 3), '', '']);
if (extra) rows.push([`ratio, ${extra.label.slice(3)} (info)`, fmt(extra.rps / baseRps, 3), '', '']);
rows.push(['throughput errors (all runs, incl. warm-up)', String(throughputErrors), '0', verdict(throughputErrors === 0)]);
for (const [i, l] of memory.layouts.entries()) {
  const head = i === 0;
  rows.push([
    `server heap+ext / rss, ${l.label}`,
    `${mb(l.before.heapUsed + l.before.external)} -> ${mb(l.open.heapUsed + l.open.external)} / ${mb(l.before.rss)} -> ${mb(l.open.rss)}`,
    '',
    '',
  ]);
  rows.push([
    `mem/sub, ${l.label}, heap+ext`,
    `${fmt(l.perSubHeapExt / KB, 1)} KB`,
    head ? `< ${SUB_TARGET_KB} KB` : '',
    head ? verdict(l.perSubHeapExt / KB < SUB_TARGET_KB) : '(info)',
  ]);
  rows.push([
    `mem/sub, ${l.label}, rss`,
    `${fmt(l.perSubRss / KB, 1)} KB`,
    head ? `< ${SUB_TARGET_KB} KB` : '',
    head ? verdict(l.perSubRss / KB < SUB_TARGET_KB) : '(info)',
  ]);
  rows.push([
    `  first values / errors`,
    `${l.firstValues}/${l.subscriptions}, ${l.errors} errors`,
    'all, 0',
    verdict(l.firstValues === l.subscriptions && l.errors === 0),
  ]);
  rows.push([
    `  listeners, sockets after close`,
    `${l.after.listeners}, ${l.after.sockets}`,
    '0, 0',
    verdict(l.after.listeners === 0 && l.after.sockets === 0),
  ]);
}
const stopRuns = ours.length + 1 + (extra ? 1 : 0) + 1;
const stopFails = stopsHung + (memory.stop && !memory.stop.stopped ? 1 : 0);
rows.push(['app.stop() resolved after a run', `${stopRuns - stopFails}/${stopRuns}`, 'all', verdict(stopFails === 0)]);

// 3. Local engine: seconds per step, share outside session.run, peak memory (own process).
const localRun = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'bench/local-engine.ts'], {
  env: process.env,
  maxBuffer: 1 << 20,
});
const local = JSON.parse(localRun.stdout.trim().split('\n').at(-1)!) as LocalEngineFigures[];
for (const f of local) {
  rows.push([`local ${f.model} ${f.size}, ${f.steps} steps: s/step`, fmt(f.secondsPerStep, 4), '', '(info)']);
  rows.push([
    `  share of a step outside session.run`,
    `${fmt(f.outsideRunShare * 100, 1)} % (${fmt(f.secondsPerStep * f.outsideRunShare * 1000, 2)} ms)`,
    '< 5 %',
    verdict(f.outsideRunShare < 0.05),
  ]);
  rows.push([`  peak RSS of the process`, `${fmt(f.peakRssMb, 0)} MB`, '', '(info)']);
  rows.push([
    `  a watched preview: made in the loop / encoded`,
    `${fmt(f.previewMakeMs, 3)} ms / ${fmt(f.previewEncodeMs, 2)} ms`,
    '',
    '(info)',
  ]);
  rows.push([
    `  ms/step, a preview every step vs unwatched`,
    `${fmt(f.stepMsWatched, 2)} vs ${fmt(f.stepMsUnwatched, 2)} (ratio ${fmt(f.stepMsWatched / f.stepMsUnwatched, 3)})`,
    '',
    '(info)',
  ]);
}

// 4. Soak: many keys at once against src/main.ts with the local engine; its rows join the summary.
if (env.BENCH_SOAK !== '0') {
  const soakOptions = soakOptionsFromEnv();
  console.log(
    `4. Soak: ${soakOptions.keys} keys, ${fmt(soakOptions.durationMs / 1000)} s of mixed load (BENCH_SOAK_MS; BENCH_SOAK=0 skips), ` +
      `src/main.ts with the local engine and the default per-key limits`,
  );
  const soak = await runSoak(soakOptions);
  printSoakReport(soak);
  console.log(`  [${elapsed()}]`);
  console.log();
  rows.push(...soakSummaryRows(soak));
}

// 5. Scale-out: API replicas and worker processes on Postgres and Redis; its rows join the summary.
if (env.BENCH_SCALE !== '0') {
  const scaleOptions = scaleOptionsFromEnv();
  console.log(
    `5. Scale-out (BENCH_SCALE=0 skips): 2 API replicas (src/main.ts) and ${[...new Set(scaleOptions.workers)].join(' or ')} \`npm run worker\` processes ` +
      `(batches with ${scaleOptions.workers.join(', ')}) ` +
      `on Postgres and Redis, local engine on the tiny models; then mutation throughput with Postgres`,
  );
  const scale = await runScale(scaleOptions, settings);
  printScaleReport(scale);
  console.log(`  [${elapsed()}]`);
  console.log();
  rows.push(...scaleSummaryRows(scale));
}

const w = [Math.max(...rows.map((r) => r[0].length)) + 2, Math.max(...rows.map((r) => r[1].length)) + 2, 12, 6];
console.log(
  `SUMMARY (${upstreamMode(settings.hold)}; total ${elapsed()}; load average now ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')})`,
);
console.log(`${pad('measure', w[0]!)}${pad('value', w[1]!)}${pad('target', w[2]!)}result`);
console.log('-'.repeat(w[0]! + w[1]! + w[2]! + w[3]!));
for (const [a, b, c, d] of rows) console.log(`${pad(a, w[0]!)}${pad(b, w[1]!)}${pad(c, w[2]!)}${d}`);
