import path from 'node:path';
import { SqliteKeyStore, type KeyStore } from './auth/key-store.js';
import { PgKeyStore } from './auth/pg-key-store.js';
import type { Config } from './config.js';
import { CatalogueService } from './engines/catalogue-service.js';
import { createEngine } from './engines/create-engine.js';
import { createGraphQL, GRAPHQL_PATH } from './http/graphql.js';
import { createReadiness } from './http/health.js';
import { createHttpServer } from './http/server.js';
import { checkDataUrl } from './images/fetch-image.js';
import { ImageLinks } from './images/image-links.js';
import { createImageStore } from './images/image-store-url.js';
import { InProcessJobEvents } from './jobs/job-events.js';
import type { ImageLedger } from './jobs/image-ledger.js';
import { JobMetrics } from './jobs/job-metrics.js';
import { JobService } from './jobs/job-service.js';
import { SqliteJobStore, type JobStore } from './jobs/job-store.js';
import { PgJobStore } from './jobs/pg-job-store.js';
import { JobUpdater } from './jobs/job-updater.js';
import { JobAdmission } from './limits/job-admission.js';
import { createLogger, jobLogger, type Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { parseAllowHosts } from './net/address-policy.js';
import { checkOutboundUrl, outboundRefusal } from './net/guarded-agent.js';
import { RetentionSweeper } from './retention/retention-sweeper.js';
import { PgRetentionStore } from './retention/pg-retention-store.js';
import { PgSweepLock } from './retention/pg-sweep-lock.js';
import type { RetentionStore } from './retention/retention-store.js';
import { InProcessLock, type SweepLock } from './retention/sweep-lock.js';
import { SqliteRetentionStore } from './retention/sqlite-retention-store.js';
import { InProcessRunner } from './runner/in-process-runner.js';
import { createPgPool, migratePostgres } from './storage/postgres.js';
import { openDatabase, WalSync } from './storage/sqlite.js';
import { WriteBatcher } from './storage/write-batcher.js';
import { createWebhooks } from './webhooks/create-webhooks.js';
import { PgWebhookStore } from './webhooks/pg-webhook-store.js';
import { SqliteWebhookStore, type WebhookStore } from './webhooks/webhook-store.js';
import type { DestinationStream } from 'pino';

export interface App {
  /** Listens, resumes unfinished jobs; resolves to the base URL. */
  start(): Promise<string>;
  /** Graceful: stops accepting, closes sockets, waits for in-flight engine calls, closes the store. */
  stop(): Promise<void>;
  /** The API keys (main.ts makes the first one). */
  readonly keys: KeyStore;
  readonly logger: Logger;
  /** This app's metrics (its own registry, served at GET /metrics). */
  readonly metrics: Metrics;
  /** The periodic deletion of old jobs and orphan images (sweep() runs one now). */
  readonly retention: RetentionSweeper;
}

export interface AppOptions {
  /** The time jobs are stamped with and retention measures by (tests move it on instead of waiting). */
  clock?: () => number;
  /** Where log lines go instead of stdout (tests read them). */
  logDestination?: DestinationStream;
}

/** Wires the whole server. Owns every socket, timer and handle it opens; stop() releases them all. */
export async function buildApp(config: Config, options: AppOptions = {}): Promise<App> {
  const clock = options.clock ?? Date.now;
  const now = () => new Date(clock());
  const logger = createLogger(config.logLevel, { format: config.logFormat, destination: options.logDestination });
  const metrics = createMetrics();
  const stores = await openStores(config, logger, clock);
  const { keys, jobs: store, retention: retentionStore } = stores;
  const events = new InProcessJobEvents();
  const images = createImageStore(config.imageStore);
  try {
    await images.init();
  } catch (err) {
    images.close();
    await stores.close();
    throw new Error(`the image store ${images.location} cannot be used: ${(err as Error).message}`, { cause: err });
  }
  const links = new ImageLinks(images, config.imageUrls);
  const engine = await createEngine(config.engine, logger);
  const upstreamKeys = config.engine.kind === 'imagepipeline' ? config.engine.workers.flatMap((w) => (w.apiKey ? [w.apiKey] : [])) : [];
  const updater = new JobUpdater({ store, events, images, logger, ledger: retentionStore, secrets: upstreamKeys, now });
  const jobMetrics = new JobMetrics(metrics, clock);
  updater.onChange((before, after) => jobMetrics.changed(before, after));
  const runner = new InProcessRunner(
    engine,
    store,
    updater,
    { poller: config.poller, submitConcurrency: config.submitter.concurrency },
    logger,
  );
  const admission = new JobAdmission(config.admission);
  updater.onFinished((job) => admission.finished(job.ownerId, job.id));

  let listeningUrl = `http://${config.host}:${config.port}`;
  const webhooks = createWebhooks({
    store: stores.webhooks,
    keys,
    jobs: store,
    config: config.webhooks,
    publicBaseUrl: () => config.publicUrl ?? listeningUrl,
    logger,
  });
  updater.onFinished((job) => {
    webhooks.deliverer.jobFinished(job).catch((err: unknown) => jobLogger(logger, job.id).error({ err }, 'could not queue the webhook'));
  });
  const imageAllow = parseAllowHosts(config.imageFetchAllowHosts);
  // What can be judged when the request arrives (a data: URL's bytes are in it); names that
  // resolve to private addresses are refused later, when fetched or called.
  const imageLimits = config.engine.kind === 'local' ? config.engine.imageFetch : {};
  const outboundUrls = {
    webhook: webhooks.checkUrl,
    image: async (url: string) =>
      url.trimStart().slice(0, 5).toLowerCase() === 'data:'
        ? checkDataUrl(url, imageLimits)
        : outboundRefusal(checkOutboundUrl(url, imageAllow)),
  };
  const jobs = new JobService({ store, events, engine, runner, admission, outboundUrls, logger, now });
  jobs.onCreated((job) => jobMetrics.created(job));
  const models = new CatalogueService(engine);

  metrics.sample('queueDepth', () => runner.queueDepth());
  metrics.sample('jobsTracked', () => runner.trackedCount());
  metrics.sample('jobSubscriptions', () => events.listenerCount());
  metrics.sample('previews', () => engine.previewsMade?.() ?? 0);

  const retention = new RetentionSweeper(
    { store: retentionStore, images, lock: stores.sweepLock, logger, metrics, clock },
    { maxAgeMs: config.retention.maxAgeMs, sweepIntervalMs: config.retention.sweepIntervalMs },
  );
  const readiness = createReadiness({ database: () => store.ping(), images: () => images.ping() }, logger);

  const yoga = createGraphQL({ config, logger, keys, jobs, models, links, metrics });
  const http = createHttpServer({ config, logger, yoga, keys, jobs, images, links, metrics, readiness });

  let stopping: Promise<void> | null = null;

  return {
    keys,
    logger,
    metrics,
    retention,

    async start() {
      const url = await http.listen();
      listeningUrl = url;
      const active = await runner.start();
      for (const job of active) admission.started(job.ownerId, job.id);
      await webhooks.deliverer.start();
      retention.start();
      logger.info({ url: `${url}${GRAPHQL_PATH}`, resumedJobs: active.length, engine: engine.name }, 'server listening');
      return url;
    },

    stop() {
      stopping ??= (async () => {
        await http.closeSockets();
        logger.debug('stop: sockets closed');
        // Engine calls in flight get the grace period; past it their jobs are simply resumed on the next start.
        let graceTimer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.all([runner.stop(), webhooks.deliverer.stop(), retention.stop()]),
          new Promise((resolve) => (graceTimer = setTimeout(resolve, config.shutdownGraceMs))),
        ]);
        clearTimeout(graceTimer);
        logger.debug('stop: runner and webhook deliveries idle');
        await http.closeConnections(config.shutdownGraceMs);
        logger.debug('stop: http closed');
        await Promise.all([engine.close(), webhooks.close()]);
        images.close();
        await stores.close();
        logger.info('server stopped');
      })();
      return stopping;
    },
  };
}

/** Where jobs, keys, webhook deliveries and the image ledger live: SQLite in DATA_DIR, or Postgres with DATABASE_URL. */
interface Stores {
  keys: KeyStore;
  jobs: JobStore;
  webhooks: WebhookStore;
  /** What the retention sweep deletes, and the notes of images written for a job (JobUpdater's ledger). */
  retention: RetentionStore & ImageLedger;
  /** Keeps the sweep to one process at a time: in this process for SQLite, across processes for Postgres. */
  sweepLock: SweepLock;
  /** Makes every answered write durable and closes the database (or its pool). */
  close(): Promise<void>;
}

async function openStores(config: Config, logger: Logger, clock: () => number): Promise<Stores> {
  if (config.databaseUrl) {
    const pool = createPgPool(config.databaseUrl, (err) =>
      logger.warn({ err }, 'a Postgres connection failed; the next query opens a new one'),
    );
    try {
      const { applied } = await migratePostgres(pool);
      logger.info({ database: 'postgres', migrationsApplied: applied }, 'database ready');
    } catch (err) {
      await pool.end();
      throw err;
    }
    return {
      keys: new PgKeyStore(pool),
      jobs: new PgJobStore(pool),
      // A claimed delivery is left to its process for two attempts' time limits and a margin.
      webhooks: new PgWebhookStore(pool, 2 * config.webhooks.timeoutMs + 30_000),
      retention: new PgRetentionStore(pool, clock),
      sweepLock: new PgSweepLock(pool),
      close: () => pool.end(),
    };
  }
  const dbFile = path.join(config.dataDir, 'sd-api.sqlite');
  const db = openDatabase(dbFile);
  const walSync = new WalSync(dbFile, config.sqliteSynchronous === 'FULL');
  const jobs = new SqliteJobStore(db, walSync);
  const retention = new SqliteRetentionStore(db, walSync, clock);
  return {
    keys: new SqliteKeyStore(db, walSync),
    jobs,
    webhooks: new SqliteWebhookStore(db, new WriteBatcher(db, walSync)),
    retention,
    // One server process owns the SQLite file: a lock in this process is enough.
    sweepLock: new InProcessLock(),
    async close() {
      await Promise.all([jobs.flush(), retention.flush()]);
      db.pragma('wal_checkpoint(TRUNCATE)');
      walSync.close();
      db.close();
    },
  };
}
