import { percentile } from '../lib/load.js';
import { TERMINAL, type JobRec, type Ledger } from './ledger.js';
import type { SoakOptions } from './options.js';
import type { MemorySample } from './sampler.js';
import type { ServerLog } from './server.js';
import { memoryTrends } from './trend.js';
import type { Verification } from './verify.js';

/** The soak's figures, computed once everything has ended, from the ledger and the memory samples. */

export interface SoakResult {
  options: SoakOptions;
  startupMs: number;
  loadMs: number;
  accepted: { total: number; graphql: number; rest: number; burst: number; storm: number };
  byMode: Record<string, number>;
  finished: Record<string, number>;
  failureCodes: Record<string, number>;
  lost: number;
  lostSamples: string[];
  drainMs: number;
  drained: boolean;
  imagesChecked: number;
  imageBytes: number;
  errors: Record<string, number>;
  unexpected: Record<string, number>;
  unexpectedSamples: string[];
  counters: Record<string, number>;
  acceptLatency: { p50: number; p99: number };
  jobLatency: { p50: number; p99: number };
  jobsPerMinAccepted: number;
  jobsPerMinFinished: number;
  memory: {
    samples: MemorySample[];
    start: MemorySample | null;
    end: MemorySample | null;
    maxRssMb: number;
    peakRssMb: number | null;
    /** After warm-up: the first sample of the second half of the load. */
    warm: MemorySample | null;
    rssSlopeMbPerMin: number;
    rssSlopeSe: number;
    heapSlopeMbPerMin: number;
    /** heap + external (the Buffers the main thread holds), the JS-visible part of RSS. */
    heapExtSlopeMbPerMin: number;
    heapExtSlopeSe: number;
    slopeSamples: number;
  };
  serverCpuPercent: number;
  serverLog: ServerLog;
  stop: { exitCode: number | null; signal: string | null; ms: number; crashed: boolean };
}

/** What runSoak measured along the way. */
export interface SoakFacts {
  options: SoakOptions;
  startupMs: number;
  /** When the load started (seconds since the soak started) and how long it ran. */
  loadStartS: number;
  loadMs: number;
  /** The server's CPU seconds during the load. */
  loadCpuS: number;
  drained: boolean;
  drainMs: number;
  ledger: Ledger;
  verification: Verification;
  samples: MemorySample[];
  peakRssMb: number | null;
  serverLog: ServerLog;
  stop: SoakResult['stop'];
}

export function soakResult(f: SoakFacts): SoakResult {
  const { ledger, samples, loadMs } = f;
  const recs = [...ledger.jobs.values()];
  const jobs = jobFigures(recs);
  const terminal = jobs.finished.SUCCESS! + jobs.finished.FAILURE! + jobs.finished.CANCELED!;
  const trends = memoryTrends(samples, f.loadStartS + loadMs / 2000);
  const lat = Float64Array.from(ledger.acceptLatencies);
  const jl = Float64Array.from(jobs.latencies);
  const count = (via: JobRec['via']) => recs.filter((r) => r.via === via).length;
  return {
    options: f.options,
    startupMs: f.startupMs,
    loadMs,
    accepted: { total: recs.length, graphql: count('graphql'), rest: count('rest'), burst: count('burst'), storm: count('storm') },
    byMode: jobs.byMode,
    finished: jobs.finished,
    failureCodes: jobs.failureCodes,
    lost: f.verification.lost,
    lostSamples: f.verification.lostSamples,
    drainMs: f.drainMs,
    drained: f.drained,
    imagesChecked: f.verification.images,
    imageBytes: f.verification.imageBytes,
    errors: Object.fromEntries([...ledger.errors].sort((a, b) => b[1] - a[1])),
    unexpected: Object.fromEntries(ledger.unexpected),
    unexpectedSamples: ledger.unexpectedSamples,
    counters: Object.fromEntries([...ledger.counters].sort((a, b) => a[0].localeCompare(b[0]))),
    acceptLatency: { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) },
    jobLatency: { p50: percentile(jl, 0.5), p99: percentile(jl, 0.99) },
    jobsPerMinAccepted: recs.length / (loadMs / 60_000),
    jobsPerMinFinished: terminal / ((jobs.lastFinished - jobs.firstCreated) / 60_000),
    memory: {
      samples,
      start: samples.find((m) => m.phase === 'load') ?? samples[0] ?? null,
      end: samples.at(-1) ?? null,
      maxRssMb: Math.max(...samples.map((m) => m.rssMb)),
      peakRssMb: f.peakRssMb,
      warm: trends.window[0] ?? null,
      rssSlopeMbPerMin: trends.rss.slope,
      rssSlopeSe: trends.rss.se,
      heapSlopeMbPerMin: trends.heapSlope,
      heapExtSlopeMbPerMin: trends.heapExt.slope,
      heapExtSlopeSe: trends.heapExt.se,
      slopeSamples: trends.window.length,
    },
    serverCpuPercent: (f.loadCpuS / (loadMs / 1000)) * 100,
    serverLog: f.serverLog,
    stop: f.stop,
  };
}

/** Final states as verified (rec.final), by status, mode and failure code; created-to-SUCCESS latencies. */
function jobFigures(recs: JobRec[]) {
  const finished: Record<string, number> = { SUCCESS: 0, FAILURE: 0, CANCELED: 0 };
  const failureCodes: Record<string, number> = {};
  const byMode: Record<string, number> = {};
  const latencies: number[] = [];
  let firstCreated = Infinity;
  let lastFinished = -Infinity;
  for (const r of recs) {
    byMode[r.mode] = (byMode[r.mode] ?? 0) + 1;
    const j = r.final;
    if (!j || !TERMINAL.has(j.status)) continue;
    finished[j.status] = (finished[j.status] ?? 0) + 1;
    if (j.status === 'FAILURE') failureCodes[j.error?.code ?? '?'] = (failureCodes[j.error?.code ?? '?'] ?? 0) + 1;
    const created = Date.parse(j.createdAt);
    const done = j.finishedAt ? Date.parse(j.finishedAt) : NaN;
    firstCreated = Math.min(firstCreated, created);
    if (Number.isFinite(done)) {
      lastFinished = Math.max(lastFinished, done);
      if (j.status === 'SUCCESS') latencies.push(done - created);
    }
  }
  return { finished, failureCodes, byMode, latencies, firstCreated, lastFinished };
}
