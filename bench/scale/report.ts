import { fmt, lpad, pad, printRun, RUN_HEADER } from '../lib/format.js';
import { percentile } from '../lib/load.js';
import type { CpuFigures } from './cpu.js';
import { POLL_LABEL, type PollMode } from './options.js';
import type { ScaleResult } from './run.js';

/** The issue's target for the event latency across replicas: median under 20 ms on loopback. */
export const EVENT_P50_TARGET_MS = 20;

const p = (xs: Float64Array, q: number, digits = 1) => fmt(percentile(xs, q), digits);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export interface WorkersRatio {
  poll: PollMode;
  /** The fewest workers run (and the figures of those batches), then the other count. */
  base: WorkerFigures;
  other: WorkerFigures;
  ratio: number;
}

interface WorkerFigures {
  workers: number;
  jobsPerMinute: number;
  machine: number;
  runQueue: number;
  batches: number;
}

/** Per poll setting: the mean jobs/min of each worker count against that of the fewest (batches alternate 1, 2, 1, 2). */
export function workerRatios(r: ScaleResult): WorkersRatio[] {
  const out: WorkersRatio[] = [];
  for (const poll of r.options.polls) {
    const rows = r.batches.filter((b) => b.poll === poll);
    const of = (n: number): WorkerFigures => {
      const bs = rows.filter((b) => b.workers === n);
      return {
        workers: n,
        jobsPerMinute: mean(bs.map((b) => b.jobsPerMinute)),
        machine: mean(bs.map((b) => b.cpu.machine)),
        runQueue: mean(bs.map((b) => b.cpu.runQueueMean)),
        batches: bs.length,
      };
    };
    const counts = [...new Set(rows.map((b) => b.workers))].sort((a, b) => a - b);
    if (counts.length < 2) continue;
    const base = of(counts[0]!);
    for (const n of counts.slice(1)) {
      const other = of(n);
      out.push({ poll, base, other, ratio: other.jobsPerMinute / base.jobsPerMinute });
    }
  }
  return out;
}

const cpuLine = (c: CpuFigures) =>
  `cpu % of one core: ${[...c.procs].map(([label, v]) => `${label.replace('api ', '').replace('worker ', 'w')} ${fmt(v)}`).join(', ')}, ` +
  `client ${fmt(c.client)}, postgres ${fmt(c.postgres)}, redis ${fmt(c.redis)}, other ${fmt(c.other)}; ` +
  `machine ${fmt(c.machine)} of ${c.cores * 100}; run queue mean ${fmt(c.runQueueMean, 1)} (max ${fmt(c.runQueueMax)}) on ${c.cores} cores; load avg 1 min ${fmt(c.loadavg1, 2)}`;

export function printScaleReport(r: ScaleResult, log: (line: string) => void = console.log): void {
  const o = r.options;
  if (r.skipped) {
    log(`  SKIPPED: ${r.skipped}`);
    return;
  }
  if (r.batches.length > 0) {
    log(
      `  Jobs per minute: ${o.jobs} text2image jobs (${o.size}x${o.size}, ${o.steps} steps, safetyChecker off) created at once on A, ` +
        `from the first create sent to the last end announced on Redis`,
    );
    log(
      `  ${pad('run', 36)}${lpad('jobs/min', 9)}${lpad('span s', 8)}${lpad('create s', 9)}${lpad('ok', 7)}   ${pad('per worker', 12)}startedAt..finishedAt p50/p99 ms`,
    );
    for (const b of r.batches) {
      log(
        `  ${pad(`${POLL_LABEL[b.poll]}, ${b.workers} worker${b.workers > 1 ? 's' : ''}`, 36)}${lpad(fmt(b.jobsPerMinute), 9)}` +
          `${lpad(fmt(b.spanMs / 1000, 2), 8)}${lpad(fmt(b.createMs / 1000, 2), 9)}${lpad(`${b.succeeded}/${b.jobs}`, 7)}   ` +
          `${pad(b.perWorker.join(' + '), 12)}${p(b.runMs, 0.5, 0)} / ${p(b.runMs, 0.99, 0)}`,
      );
      log(`      ${cpuLine(b.cpu)}`);
    }
    for (const x of workerRatios(r))
      log(
        `  ratio ${x.other.workers} workers / ${x.base.workers}, ${POLL_LABEL[x.poll]}: ${fmt(x.ratio, 2)} ` +
          `(means of ${x.other.batches} and ${x.base.batches} batches: ${fmt(x.other.jobsPerMinute)} / ${fmt(x.base.jobsPerMinute)} jobs/min; ` +
          `machine cpu ${fmt(x.base.machine)} -> ${fmt(x.other.machine)} % of one core, run queue ${fmt(x.base.runQueue, 1)} -> ${fmt(x.other.runQueue, 1)})`,
      );
  }
  const l = r.latency;
  if (l) {
    log(
      `  Latencies: ${l.jobs} jobs (${o.latencySize}x${o.latencySize}, ${o.latencySteps} steps) created on A one at a time, each after the last ended ` +
        `(the queue empty, ${r.batches.at(-1)?.workers ?? '?'} idle workers, ${POLL_LABEL[r.batches.at(-1)?.poll ?? 'fast']}); ${l.succeeded}/${l.jobs} SUCCESS`,
    );
    log(`  ${pad('measure', 72)}${lpad('p50 ms', 8)}${lpad('p99 ms', 8)}${lpad('max ms', 8)}${lpad('n', 6)}`);
    const row = (label: string, xs: Float64Array) =>
      log(`  ${pad(label, 72)}${lpad(p(xs, 0.5), 8)}${lpad(p(xs, 0.99), 8)}${lpad(p(xs, 1), 8)}${lpad(String(xs.length), 6)}`);
    row('queue: createdAt (stamped on A) -> worker took it ("running the job")', l.createdToWorker);
    row('queue: create sent by the client -> worker took it', l.sendToWorker);
    row('queue: createdAt -> the engine started it (startedAt)', l.createdToEngine);
    row('event: on Redis -> jobStatus subscriber on replica B (every event)', l.events);
    row("event: worker logged the end (after publishing) -> B's subscriber got SUCCESS", l.endEvents);
    log(
      `      events: ${l.eventsPublished} published after B's subscription held, ${l.eventsMatched} reached B's subscriber as such ` +
        `(the rest were coalesced by the subscription into a newer step), ${l.eventsAmbiguous} ambiguous (not counted)`,
    );
    log(`      ${cpuLine(l.cpu)}`);
  }
  const t = r.throughput;
  if (t) {
    log(`  Mutation throughput (as section 1: CreateText2Image, fake upstream holding jobs), against bare yoga:`);
    log(`  ${RUN_HEADER}`);
    for (const run of [t.baselines[0]!, t.embedded, t.postgres, t.queue, ...t.baselines.slice(1)]) {
      printRun(run, (line) => log(`  ${line}`));
      const m = t.machine.get(run.label);
      if (m)
        log(
          `      machine in the window: postgres ${fmt(m.postgres)}, redis ${fmt(m.redis)}, all ${fmt(m.machine)} of ${m.cores * 100} % of one core; ` +
            `run queue mean ${fmt(m.runQueueMean, 1)}`,
        );
    }
    const base = mean(t.baselines.map((b) => b.rps));
    log(
      `  ratio ours/baseline (mean of S1 S5): embedded SQLite ${fmt(t.embedded.rps / base, 3)}, Postgres ${fmt(t.postgres.rps / base, 3)}, ` +
        `Postgres + Redis queue ${fmt(t.queue.rps / base, 3)}`,
    );
  }
  for (const s of r.stops)
    if (s.killed || (s.code !== 0 && s.code !== null)) log(`  ${s.label}: stop took ${s.ms} ms, killed ${s.killed}, code ${s.code}`);
  if (r.problems.length > 0) {
    log(`  problems (${r.problems.length}):`);
    for (const line of r.problems.slice(0, 20)) log(`    ${line}`);
  }
}

/** Rows for bench/index.ts's SUMMARY: [measure, value, target, result]. */
export function scaleSummaryRows(r: ScaleResult): [string, string, string, string][] {
  if (r.skipped) return [['scale-out (section 5)', `skipped: ${r.skipped}`, '', '(info)']];
  const rows: [string, string, string, string][] = [];
  for (const b of r.batches)
    rows.push([
      `scale: jobs/min, ${b.workers} worker${b.workers > 1 ? 's' : ''}, ${POLL_LABEL[b.poll]}`,
      `${fmt(b.jobsPerMinute)} (machine cpu ${fmt(b.cpu.machine)} %, run queue ${fmt(b.cpu.runQueueMean, 1)})`,
      '',
      '(info)',
    ]);
  for (const x of workerRatios(r))
    rows.push([
      `scale: jobs/min ratio ${x.other.workers} workers / ${x.base.workers}, ${POLL_LABEL[x.poll]}`,
      `${fmt(x.ratio, 2)} (${fmt(x.other.jobsPerMinute)} / ${fmt(x.base.jobsPerMinute)})`,
      '',
      '(info)',
    ]);
  const l = r.latency;
  if (l) {
    rows.push([
      'scale: queue latency createdAt -> worker, p50 / p99',
      `${p(l.createdToWorker, 0.5)} / ${p(l.createdToWorker, 0.99)} ms`,
      '',
      '(info)',
    ]);
    rows.push([
      'scale: createdAt -> engine started, p50 / p99',
      `${p(l.createdToEngine, 0.5)} / ${p(l.createdToEngine, 0.99)} ms`,
      '',
      '(info)',
    ]);
    const p50 = percentile(l.events, 0.5);
    rows.push([
      'scale: event latency worker -> subscriber on B, p50 / p99',
      `${p(l.events, 0.5)} / ${p(l.events, 0.99)} ms (${l.events.length} events)`,
      `p50 < ${EVENT_P50_TARGET_MS} ms`,
      Number.isFinite(p50) && p50 < EVENT_P50_TARGET_MS ? 'PASS' : 'MISS',
    ]);
    rows.push([
      'scale: end event worker -> subscriber on B, p50 / p99',
      `${p(l.endEvents, 0.5)} / ${p(l.endEvents, 0.99)} ms (${l.endEvents.length} jobs)`,
      '',
      '(info)',
    ]);
    rows.push(['scale: latency jobs SUCCESS', `${l.succeeded}/${l.jobs}`, 'all', l.succeeded === l.jobs ? 'PASS' : 'MISS']);
  }
  const t = r.throughput;
  if (t) {
    const base = mean(t.baselines.map((b) => b.rps));
    rows.push(['scale: throughput ratio, embedded SQLite (S2)', fmt(t.embedded.rps / base, 3), '', '(info)']);
    rows.push(['scale: throughput ratio, Postgres (S3)', fmt(t.postgres.rps / base, 3), '', '(info)']);
    rows.push(['scale: throughput ratio, Postgres + Redis queue (S4)', fmt(t.queue.rps / base, 3), '', '(info)']);
    const errors = [...t.baselines, t.embedded, t.postgres, t.queue].reduce((n, x) => n + x.errors + x.warmupErrors, 0);
    rows.push(['scale: throughput errors (S1-S5, incl. warm-up)', String(errors), '0', errors === 0 ? 'PASS' : 'MISS']);
  }
  const failed = r.batches.reduce((n, b) => n + b.failed, 0);
  if (r.batches.length > 0) rows.push(['scale: batch jobs not SUCCESS', String(failed), '0', failed === 0 ? 'PASS' : 'MISS']);
  const killed = r.stops.filter((s) => s.killed).length;
  rows.push([
    'scale: processes stopped by SIGTERM',
    `${r.stops.length - killed}/${r.stops.length}`,
    'all',
    killed === 0 && r.stops.length > 0 ? 'PASS' : 'MISS',
  ]);
  rows.push(['scale: problems (logged warnings, errors)', String(r.problems.length), '0', r.problems.length === 0 ? 'PASS' : 'MISS']);
  return rows;
}
