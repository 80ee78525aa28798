import path from 'node:path';
import type { Config } from './config.js';
import { createEngine } from './engines/create-engine.js';
import { LocalImageStore } from './images/image-store.js';
import { SqliteJobStore } from './jobs/job-store.js';
import { JobUpdater } from './jobs/job-updater.js';
import { createLogger, type Logger } from './logger.js';
import { GenerationWorker } from './queue/generation-worker.js';
import { RedisBus } from './queue/redis-bus.js';
import { RedisJobEvents } from './queue/redis-job-events.js';
import { openDatabase, WalSync } from './storage/sqlite.js';

export interface WorkerApp {
  /** Connects and starts pulling jobs. */
  start(): Promise<void>;
  /**
   * Graceful: takes no more jobs, lets the running ones finish within SHUTDOWN_GRACE_MS, hands
   * the rest back to the queue, then closes the engine, Redis and the store.
   */
  stop(): Promise<void>;
  readonly worker: GenerationWorker;
  readonly logger: Logger;
}

/**
 * Wires a worker process (npm run worker): the job store and image store the API processes use,
 * the configured engine, job events on Redis, and the BullMQ worker that pulls jobs. It serves
 * no HTTP. Owns every connection, timer and handle it opens; stop() releases them all.
 */
export async function buildWorker(config: Config): Promise<WorkerApp> {
  const queue = config.queue;
  if (!queue) throw new Error('a worker needs REDIS_URL: the queue it takes jobs from');
  const logger = createLogger(config.logLevel).child({ process: 'worker' });
  // The record shared with the API processes (SQLite in WAL mode on one machine, for now).
  const dbFile = path.join(config.dataDir, 'sd-api.sqlite');
  const db = openDatabase(dbFile);
  const walSync = new WalSync(dbFile, config.sqliteSynchronous === 'FULL');
  const store = new SqliteJobStore(db, walSync);
  const images = new LocalImageStore(config.dataDir);
  await images.init();
  // A worker runs WORKER_CONCURRENCY generations at once: as many local generation threads.
  const engineConfig = config.engine.kind === 'local' ? { ...config.engine, concurrency: config.worker.concurrency } : config.engine;
  const engine = await createEngine(engineConfig, logger);
  const upstreamKeys = config.engine.kind === 'imagepipeline' ? config.engine.workers.flatMap((w) => (w.apiKey ? [w.apiKey] : [])) : [];
  const bus = new RedisBus(queue.redisUrl, queue.prefix, logger, `${queue.prefix}:worker`);
  const events = new RedisJobEvents(bus, (id) => store.get(id), logger);
  const updater = new JobUpdater(store, events, images, logger, upstreamKeys);
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

  let stopping: Promise<void> | null = null;
  return {
    worker,
    logger,
    async start() {
      await worker.start();
      logger.info({ engine: engine.name, concurrency: config.worker.concurrency, prefix: queue.prefix }, 'worker pulling jobs');
    },
    stop() {
      stopping ??= (async () => {
        await worker.stop(config.shutdownGraceMs);
        await engine.close();
        await bus.close();
        await store.flush();
        db.pragma('wal_checkpoint(PASSIVE)');
        walSync.close();
        db.close();
        logger.info('worker stopped');
      })();
      return stopping;
    },
  };
}
