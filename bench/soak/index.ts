/**
 * Soak (part 4 of `npm run bench`, or alone: `npx tsx bench/soak/index.ts`): minutes of mixed load
 * from many API keys at once against the real server (src/main.ts in its own process, as
 * operators run it) with the local engine on its tiny generated models, over loopback, with the
 * per-key limits at their defaults, so the limiter is exercised too. Then it stops the load,
 * waits for every accepted job to end, and checks that none was lost.
 *
 * Load, per key (BENCH_SOAK_KEYS, default 20; the server's first-start key plus keys made with
 * `npm run --silent keys -- create`), for BENCH_SOAK_MS (default 180 s):
 *   - a GraphQL client (clients/graphql.ts): mutations in all three modes (small sizes 64..256,
 *     2..10 steps, 1-2 samples, random schedulers, sometimes an embedding, init and mask images
 *     as base64 PNG data: URLs); each accepted job followed to its end over graphql-ws, followed
 *     and dropped mid-stream (TCP socket destroyed, no close frame), followed across a reconnect
 *     (clients/subscriptions.ts), canceled, or left alone; ~5 % invalid inputs, ~2 % image2image
 *     from http://localhost (refused at request time, or FAILURE IMAGE_UNAVAILABLE);
 *   - a REST client (clients/rest.ts): submit, poll to the end, download the images;
 *   - its shared subscription connection is replaced every ~30 s (clients/ws.ts).
 * Every BENCH_SOAK_STORM_MS (default 20 s) one key gets a storm just over one of its limits
 * (storms.ts): 40 mutations at once (burst 30), 55 WebSocket connections (cap 50), or 510
 * subscriptions on one socket (cap 500). The steady clients offer about BENCH_SOAK_RATE jobs/s
 * in total (default 8; the storms add ~0.5/s), below what the local engine does on the 2-core
 * machine with these sizes, so the queue stays bounded and the drain is short. A RATE_LIMITED
 * answer makes that client wait its Retry-After.
 *
 * End (verify.ts): every accepted job must become terminal within BENCH_SOAK_DRAIN_MS, then each
 * is read back with its images; a missing one is LOST. Memory (sampler.ts, trend.ts): the
 * server's RSS and heap after a full GC, asked for through the preloaded probe
 * (bench/servers/soak-probe.mjs), every BENCH_SOAK_SAMPLE_MS, and their trend over the second
 * half of the load. Errors are counted by code (ledger.ts); unexpected ones must be 0.
 * Knobs: options.ts.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { soakOptionsFromEnv } from './options.js';
import { fmt, printSoakReport, soakSummaryRows } from './report.js';
import { runSoak } from './run.js';

export { soakOptionsFromEnv, type SoakOptions } from './options.js';
export { printSoakReport, soakSummaryRows } from './report.js';
export type { SoakResult } from './result.js';
export type { MemorySample } from './sampler.js';
export { runSoak } from './run.js';

/** The soak alone, with its own SUMMARY table (BENCH_SOAK_MS and the other knobs as in `npm run bench`). */
export async function soakCli(): Promise<void> {
  const options = soakOptionsFromEnv();
  console.log(
    `Soak: ${options.keys} keys, ${fmt(options.durationMs / 1000)} s of load (~${options.rate} jobs/s offered + storms every ${fmt(options.stormEveryMs / 1000)} s), ` +
      `${os.cpus().length} cores, node ${process.version}`,
  );
  const result = await runSoak(options);
  printSoakReport(result);
  const rows = soakSummaryRows(result);
  const w = [Math.max(...rows.map((x) => x[0].length)) + 2, Math.max(...rows.map((x) => x[1].length)) + 2, 16];
  console.log();
  console.log('SUMMARY');
  for (const [a, b, c, d] of rows) console.log(`${a.padEnd(w[0]!)}${b.padEnd(w[1]!)}${c.padEnd(w[2]!)}${d}`);
}

// The whole path, not the file name: bench/index.ts is an index.ts too, and must not start this.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await soakCli();
