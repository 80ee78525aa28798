import { percentile } from './load.js';
import type { RunResult } from '../throughput.js';

/** Number and column formatting shared by the sections of `npm run bench`. */

export const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
export const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
export const lpad = (s: string, n: number) => (s.length >= n ? s : ' '.repeat(n - s.length) + s);

/** The header of a table of throughput runs (printRun's rows). */
export const RUN_HEADER =
  `${pad('run', 34)}${lpad('req/s', 8)}${lpad('p50 ms', 9)}${lpad('p99 ms', 9)}${lpad('ok', 8)}${lpad('errors', 8)}` +
  `   cpu% server/client/upstream   notes`;

/** One throughput run (bench/throughput.ts) as a row under RUN_HEADER, error samples after it. */
export function printRun(r: RunResult, log: (line: string) => void = console.log): void {
  const notes: string[] = [];
  if (r.warmupErrors) notes.push(`${r.warmupErrors} warm-up errors`);
  if (r.upstream)
    notes.push(`jobs created ${r.warmupOk + r.ok}, reached upstream ${r.upstream.submits}, status calls ${r.upstream.statusCalls}`);
  if (r.stop && !r.stop.stopped) notes.push(`app.stop() still pending after ${r.stop.ms} ms`);
  log(
    `${pad(r.label, 34)}${lpad(fmt(r.rps), 8)}${lpad(fmt(percentile(r.latencies, 0.5), 1), 9)}${lpad(fmt(percentile(r.latencies, 0.99), 1), 9)}` +
      `${lpad(String(r.ok), 8)}${lpad(String(r.errors), 8)}   ${pad(`${fmt(r.cpu.server)}/${fmt(r.cpu.client)}/${r.cpu.upstream === null ? '-' : fmt(r.cpu.upstream)}`, 26)}${notes.join('; ')}`,
  );
  for (const e of r.errorSamples) log(`    error sample: ${e}`);
}
