import { MB } from './options.js';
import type { SoakResult } from './result.js';
import { RSS_SLOPE_LIMIT_MB_PER_MIN, trendVerdict, verdict } from './trend.js';

/** The soak's figures as printed: the detailed report, and the rows it adds to the bench's SUMMARY. */

export const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
const list = (o: Record<string, number>) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || 'none';

export function printSoakReport(r: SoakResult, log: (line: string) => void = console.log): void {
  const m = r.memory;
  log(
    `  jobs accepted ${r.accepted.total} (GraphQL ${r.accepted.graphql}, REST ${r.accepted.rest}, bursts ${r.accepted.burst}, storms ${r.accepted.storm}; ` +
      `${list(r.byMode)}) in ${fmt(r.loadMs / 1000, 1)} s`,
  );
  log(
    `  finished: ${list(r.finished)}; FAILURE codes: ${list(r.failureCodes)}; images downloaded and checked at the end: ${r.imagesChecked} (${fmt(r.imageBytes / MB, 1)} MB)`,
  );
  log(`  LOST: ${r.lost}${r.lostSamples.length ? ` (${r.lostSamples.join('; ')})` : ''}`);
  log(`  errors by code: ${list(r.errors)}`);
  log(`  UNEXPECTED: ${sum(r.unexpected)}${sum(r.unexpected) ? ` (${list(r.unexpected)})` : ''}`);
  for (const sample of r.unexpectedSamples) log(`    sample: ${sample}`);
  for (const [k, v] of Object.entries(r.counters)) log(`    ${k}: ${v}`);
  log(
    `  throughput: ${fmt(r.jobsPerMinAccepted)} jobs/min accepted during the load, ${fmt(r.jobsPerMinFinished)} jobs/min finished (first created to last finished); ` +
      `accept latency p50 ${fmt(r.acceptLatency.p50, 1)} ms, p99 ${fmt(r.acceptLatency.p99, 1)} ms; created-to-SUCCESS p50 ${fmt(r.jobLatency.p50)} ms, p99 ${fmt(r.jobLatency.p99)} ms`,
  );
  log(
    `  server CPU during the load: ${fmt(r.serverCpuPercent)} % of one core; drain ${r.drained ? 'complete' : 'INCOMPLETE'} in ${fmt(r.drainMs / 1000, 1)} s`,
  );
  log(`  server memory (after full GC), every ${fmt(r.options.sampleMs / 1000)} s:`);
  log(
    `    ${m.samples.map((x) => `${fmt(x.atS)}s ${x.phase[0]} ${fmt(x.rssMb)}/${fmt(x.heapMb)}/${fmt(x.externalMb)}`).join('  ')}   (s, phase, RSS/heap/external MB)`,
  );
  log(
    `    RSS start ${fmt(m.start?.rssMb ?? NaN)} MB, after warm-up ${fmt(m.warm?.rssMb ?? NaN)} MB, end ${fmt(m.end?.rssMb ?? NaN)} MB, max sampled ${fmt(m.maxRssMb)} MB, peak (VmHWM) ${fmt(m.peakRssMb ?? NaN)} MB; ` +
      `heap start ${fmt(m.start?.heapMb ?? NaN, 1)} MB, end ${fmt(m.end?.heapMb ?? NaN, 1)} MB`,
  );
  log(
    `    trend over the second half of the load (${m.slopeSamples} samples): RSS ${fmt(m.rssSlopeMbPerMin, 2)} ± ${fmt(m.rssSlopeSe, 2)} MB/min (± one standard error), ` +
      `heap ${fmt(m.heapSlopeMbPerMin, 2)} MB/min, heap + external ${fmt(m.heapExtSlopeMbPerMin, 2)} ± ${fmt(m.heapExtSlopeSe, 2)} MB/min`,
  );
  log(`  server log: ${r.serverLog.warn} warnings, ${r.serverLog.error} errors`);
  for (const l of r.serverLog.samples) log(`    ${l}`);
  log(
    `  server stop (SIGTERM): exit code ${r.stop.exitCode}${r.stop.signal ? `, signal ${r.stop.signal}` : ''} in ${fmt(r.stop.ms)} ms` +
      (r.stop.crashed ? ' — it had ALREADY EXITED before the end' : ''),
  );
}

export function soakSummaryRows(r: SoakResult): [string, string, string, string][] {
  const m = r.memory;
  const unexpected = sum(r.unexpected);
  const limited = Object.entries(r.errors)
    .filter(([k]) => /RATE_LIMITED|REST 429|WS close 4429/.test(k))
    .reduce((a, [, v]) => a + v, 0);
  return [
    [`soak: ${r.options.keys} keys, ${fmt(r.loadMs / 1000)} s load, local engine (tiny)`, `${r.accepted.total} jobs accepted`, '', ''],
    ['  finished SUCCESS / FAILURE / CANCELED', `${r.finished.SUCCESS} / ${r.finished.FAILURE} / ${r.finished.CANCELED}`, '', ''],
    ['  jobs lost (not found, unfinished, images missing)', String(r.lost), '0', verdict(r.lost === 0 && r.drained)],
    ['  unexpected errors (5xx, network, inconsistencies)', String(unexpected), '0', verdict(unexpected === 0)],
    [
      '  refused as expected: bad input / limits (429, 4429)',
      `${(r.errors['GraphQL BAD_USER_INPUT'] ?? 0) + (r.errors['REST 400'] ?? 0)} / ${limited}`,
      '',
      '(info)',
    ],
    ['  throughput accepted / finished', `${fmt(r.jobsPerMinAccepted)} / ${fmt(r.jobsPerMinFinished)} jobs/min`, '', '(info)'],
    [
      '  server RSS start -> warm -> end (max)',
      `${fmt(m.start?.rssMb ?? NaN)} -> ${fmt(m.warm?.rssMb ?? NaN)} -> ${fmt(m.end?.rssMb ?? NaN)} MB (${fmt(m.maxRssMb)})`,
      '',
      '',
    ],
    [
      '  server heap / external start -> end',
      `${fmt(m.start?.heapMb ?? NaN)} / ${fmt(m.start?.externalMb ?? NaN)} -> ${fmt(m.end?.heapMb ?? NaN)} / ${fmt(m.end?.externalMb ?? NaN)} MB`,
      '',
      '',
    ],
    [
      '  RSS trend, second half of the load',
      `${fmt(m.rssSlopeMbPerMin, 1)} ± ${fmt(m.rssSlopeSe, 1)} MB/min`,
      `< ${RSS_SLOPE_LIMIT_MB_PER_MIN} MB/min`,
      trendVerdict(m.rssSlopeMbPerMin),
    ],
    [
      '  heap+external trend (after GC), same window',
      `${fmt(m.heapExtSlopeMbPerMin, 1)} ± ${fmt(m.heapExtSlopeSe, 1)} MB/min`,
      `< ${RSS_SLOPE_LIMIT_MB_PER_MIN} MB/min`,
      trendVerdict(m.heapExtSlopeMbPerMin),
    ],
    [
      '  server alive to the end, SIGTERM exit code',
      `${r.stop.crashed ? 'crashed' : 'alive'}, ${r.stop.exitCode}`,
      'alive, 0',
      verdict(!r.stop.crashed && r.stop.exitCode === 0),
    ],
  ];
}
