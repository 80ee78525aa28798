/**
 * This server (src/app.ts buildApp) in its own process, for both benchmarks. Configuration comes
 * from the environment the parent passes (DATA_DIR, IMAGEPIPELINE_URL, SQLITE_SYNCHRONOUS, ...),
 * through the real loadConfig(). Prints {"url","key"} once listening, then answers IPC:
 *   cpu    process.cpuUsage() (no GC, cheap: for throughput windows)
 *   stats  global.gc() twice, then process.memoryUsage() and the leak counters
 *   stop   app.stop(), bounded by BENCH_STOP_LIMIT_MS; answers { stopped, ms }
 */
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { readMetrics } from '../../test/helpers/metrics.js';
import { cpuSample, serveIpc } from '../lib/child.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('start this process with node --expose-gc');

const app = await buildApp(loadConfig({ ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' }));
const url = await app.start();
const key = (await app.keys.create('bench')).key;

const STOP_LIMIT_MS = Number(process.env.BENCH_STOP_LIMIT_MS ?? 5_000);
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

serveIpc(
  {
    cpu: () => cpuSample(),
    async stats() {
      // Twice, with a turn of the event loop between, so that finalizers and weak callbacks run.
      gc();
      await settle();
      gc();
      const m = process.memoryUsage();
      const gauges = await readMetrics(url);
      return {
        heapUsed: m.heapUsed,
        external: m.external,
        arrayBuffers: m.arrayBuffers,
        rss: m.rss,
        listeners: gauges.sd_job_subscriptions,
        sockets: gauges.sd_websocket_connections,
        tracked: gauges.sd_jobs_tracked,
      };
    },
  },
  // app.stop() is bounded here: a stop that never resolves is reported, not waited for.
  async () => {
    const started = performance.now();
    const done = await Promise.race([
      app.stop().then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), STOP_LIMIT_MS)),
    ]);
    return { stopped: done, ms: Math.round(performance.now() - started) };
  },
);

process.stdout.write(`${JSON.stringify({ url, key })}\n`);
