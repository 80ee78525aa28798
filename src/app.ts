import path from 'node:path';
import { SqliteKeyStore, type KeyStore } from './auth/key-store.js';
import { PgKeyStore } from './auth/pg-key-store.js';
import type { Config } from './config.js';
import { CatalogueService } from './engines/catalogue-service.js';
import { createEngine } from './engines/create-engine.js';
import { createGraphQL, GRAPHQL_PATH } from './http/graphql.js';
import { createHttpServer } from './http/server.js';
import { checkDataUrl } from './images/fetch-image.js';
import { LocalImageStore } from './images/image-store.js';
import { InProcessJobEvents } from './jobs/job-events.js';
import { JobService } from './jobs/job-service.js';
import { SqliteJobStore, type JobStore } from './jobs/job-store.js';
import { PgJobStore } from './jobs/pg-job-store.js';
import { JobUpdater } from './jobs/job-updater.js';
import { JobAdmission } from './limits/job-admission.js';
import { createLogger, type Logger } from './logger.js';
import { parseAllowHosts } from './net/address-policy.js';
import { checkOutboundUrl, outboundRefusal } from './net/guarded-agent.js';
import { InProcessRunner } from './runner/in-process-runner.js';
import { createPgPool, migratePostgres } from './storage/postgres.js';
import { openDatabase, WalSync } from './storage/sqlite.js';
import { WriteBatcher } from './storage/write-batcher.js';
import { createWebhooks } from './webhooks/create-webhooks.js';
import { PgWebhookStore } from './webhooks/pg-webhook-store.js';
import { SqliteWebhookStore, type WebhookStore } from './webhooks/webhook-store.js';

export interface App {
  /** Listens, resumes unfinished jobs; resolves to the base URL. */
  start(): Promise<string>;
  /** Graceful: stops accepting, closes sockets, waits for in-flight engine calls, closes the store. */
  stop(): Promise<void>;
  /** The API keys (main.ts makes the first one). */
  readonly keys: KeyStore;
  readonly logger: Logger;
}

/** Wires the whole server. Owns every socket, timer and handle it opens; stop() releases them all. */
export async function buildApp(config: Config): Promise<App> {
  const logger = createLogger(config.logLevel);
  const stores = await openStores(config, logger);
  const { keys, jobs: store } = stores;
  const events = new InProcessJobEvents();
  const images = new LocalImageStore(config.dataDir);
  await images.init();
  const engine = await createEngine(config.engine, logger);
  const upstreamKeys = config.engine.kind === 'imagepipeline' ? config.engine.workers.flatMap((w) => (w.apiKey ? [w.apiKey] : [])) : [];
  const updater = new JobUpdater(store, events, images, logger, upstreamKeys);
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
    webhooks.deliverer.jobFinished(job).catch((err: unknown) => logger.error({ err, jobId: job.id }, 'could not queue the webhook'));
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
  const jobs = new JobService({ store, events, engine, runner, admission, outboundUrls, logger });
  const models = new CatalogueService(engine);

  const yoga = createGraphQL({ config, logger, keys, jobs, models });
  const gauges = [
    { name: 'sd_jobs_tracked', help: 'Jobs the runner follows on their engine now.', value: () => runner.trackedCount() },
    { name: 'sd_job_subscriptions', help: 'Open jobStatus subscriptions (job event listeners).', value: () => events.listenerCount() },
    {
      name: 'sd_previews_total',
      help: 'Live previews made by this engine (only while a jobStatus subscriber selects progress.preview).',
      type: 'counter' as const,
      value: () => engine.previewsMade?.() ?? 0,
    },
  ];
  const http = createHttpServer({ config, logger, yoga, keys, jobs, images, gauges });

  let stopping: Promise<void> | null = null;

  return {
    keys,
    logger,

    async start() {
      const url = await http.listen();
      listeningUrl = url;
      const active = await runner.start();
      for (const job of active) admission.started(job.ownerId, job.id);
      await webhooks.deliverer.start();
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
          Promise.all([runner.stop(), webhooks.deliverer.stop()]),
          new Promise((resolve) => (graceTimer = setTimeout(resolve, config.shutdownGraceMs))),
        ]);
        clearTimeout(graceTimer);
        logger.debug('stop: runner and webhook deliveries idle');
        await http.closeConnections(config.shutdownGraceMs);
        logger.debug('stop: http closed');
        await Promise.all([engine.close(), webhooks.close()]);
        await stores.close();
        logger.info('server stopped');
      })();
      return stopping;
    },
  };
}

/** Where jobs, keys and webhook deliveries live: SQLite in DATA_DIR, or Postgres with DATABASE_URL. */
interface Stores {
  keys: KeyStore;
  jobs: JobStore;
  webhooks: WebhookStore;
  /** Makes every answered write durable and closes the database (or its pool). */
  close(): Promise<void>;
}

async function openStores(config: Config, logger: Logger): Promise<Stores> {
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
      close: () => pool.end(),
    };
  }
  const dbFile = path.join(config.dataDir, 'sd-api.sqlite');
  const db = openDatabase(dbFile);
  const walSync = new WalSync(dbFile, config.sqliteSynchronous === 'FULL');
  const jobs = new SqliteJobStore(db, walSync);
  return {
    keys: new SqliteKeyStore(db, walSync),
    jobs,
    webhooks: new SqliteWebhookStore(db, new WriteBatcher(db, walSync)),
    async close() {
      await jobs.flush();
      db.pragma('wal_checkpoint(TRUNCATE)');
      walSync.close();
      db.close();
    },
  };
}
