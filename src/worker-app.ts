import type { Config } from './config.js';
import { createEngine } from './engines/create-engine.js';
import { startMetricsServer, type MetricsServer } from './http/metrics.js';
import { createImageStore } from './images/image-store-url.js';
import { JobMetrics } from './jobs/job-metrics.js';
import { JobUpdater } from './jobs/job-updater.js';
import { createLogger, type Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { openStores } from './open-stores.js';
import { GenerationWorker } from './queue/generation-worker.js';
import { RedisBus } from './queue/redis-bus.js';
import { RedisJobEvents } from './queue/redis-job-events.js';
import type { DestinationStream } from 'pino';

export interface WorkerApp {
  /** Connects and starts pulling jobs. */
  start(): Promise<void>;
  /**
   * Graceful: takes no more jobs, lets the running ones finish within SHUTDOWN_GRACE_MS, hands
   * the rest back to the queue, then closes the engine, Redis and the stores.
   */
  stop(): Promise<void>;
  readonly worker: GenerationWorker;
  readonly logger: Logger;
  /** This worker's metrics (its own registry, served on METRICS_PORT when set). */
  readonly metrics: Metrics;
  /** Where GET /metrics answers once started (METRICS_PORT); null without one. */
  metricsUrl(): string | null;
}

export interface WorkerOptions {
  /** The time jobs are stamped with (tests). */
  clock?: () => number;
  /** Where log lines go instead of stdout (tests read them). */
  logDestination?: DestinationStream;
}

/**
 * Wires a worker process (npm run worker): the stores the API processes use (openStores():
 * Postgres with DATABASE_URL, else the SQLite file in DATA_DIR, which only works with every
 * process on one machine), the configured image store (a folder or the bucket), the configured
 * engine, job events on Redis, and the BullMQ worker that pulls jobs. It serves no API; with
 * METRICS_PORT, its metrics (the API's definitions of the job metrics, recorded from this
 * worker's updater: jobs finished, queue wait, generation time, time per step, engine errors) on
 * a port of its own. Owns every connection, timer and handle it opens; stop() releases them all.
 */
export async function buildWorker(config: Config, options: WorkerOptions = {}): Promise<WorkerApp> {
  const queue = config.queue;
  if (!queue) throw new Error('a worker needs REDIS_URL: the queue it takes jobs from');
  const clock = options.clock ?? Date.now;
  const now = () => new Date(clock());
  const logger = createLogger(config.logLevel, { format: config.logFormat, destination: options.logDestination }).child({
    process: 'worker',
  });
  const stores = await openStores(config, logger, clock);
  const store = stores.jobs;
  const images = createImageStore(config.imageStore);
  try {
    await images.init();
  } catch (err) {
    images.close();
    await stores.close();
    throw new Error(`the image store ${images.location} cannot be used: ${(err as Error).message}`, { cause: err });
  }
  // A worker runs WORKER_CONCURRENCY generations at once: as many local generation threads.
  const engineConfig = config.engine.kind === 'local' ? { ...config.engine, concurrency: config.worker.concurrency } : config.engine;
  const engine = await createEngine(engineConfig, logger);
  const upstreamKeys = config.engine.kind === 'imagepipeline' && config.engine.apiKey ? [config.engine.apiKey] : [];
  const bus = new RedisBus(queue.redisUrl, queue.prefix, logger, `${queue.prefix}:worker`);
  const events = new RedisJobEvents(bus, (id) => store.get(id), logger);
  // The image ledger as on the API: images written for a job that never commits SUCCESS are
  // found and removed by the retention sweep (which runs on the API processes).
  const updater = new JobUpdater({ store, events, images, logger, ledger: stores.retention, secrets: upstreamKeys, now });
  const metrics = createMetrics();
  const jobMetrics = new JobMetrics(metrics, clock);
  updater.onChange((before, after) => jobMetrics.changed(before, after));
  const worker = new GenerationWorker(
    engine,
    store,
    updater,
    bus,
    {
      queue,
      concurrency: config.worker.concurrency,
      poller: config.poller,
      submitConcurrency: config.submitter.concurrency,
    },
    logger,
  );
  metrics.sample('workerJobsRunning', () => worker.runningCount());
  metrics.sample('jobsTracked', () => worker.trackedCount());
  metrics.sample('previews', () => engine.previewsMade?.() ?? 0);

  let metricsServer: MetricsServer | null = null;
  let stopping: Promise<void> | null = null;
  return {
    worker,
    logger,
    metrics,
    metricsUrl: () => metricsServer?.url ?? null,
    async start() {
      if (config.worker.metricsPort !== undefined) {
        metricsServer = await startMetricsServer(metrics.registry, { port: config.worker.metricsPort, host: config.host });
        logger.info({ url: `${metricsServer.url}/metrics` }, 'worker metrics served');
      }
      await worker.start();
      logger.info({ engine: engine.name, concurrency: config.worker.concurrency, prefix: queue.prefix }, 'worker pulling jobs');
    },
    stop() {
      stopping ??= (async () => {
        await worker.stop(config.shutdownGraceMs);
        // Served to the end, so the last scrape sees the jobs finished during the grace period.
        await metricsServer?.close();
        await engine.close();
        await bus.close();
        images.close();
        await stores.close();
        logger.info('worker stopped');
      })();
      return stopping;
    },
  };
}
