import path from 'node:path';
import { SqliteKeyStore } from './auth/key-store.js';
import type { Config } from './config.js';
import { CatalogueService } from './engines/catalogue-service.js';
import { createEngine } from './engines/create-engine.js';
import { createGraphQL, GRAPHQL_PATH } from './http/graphql.js';
import { createHttpServer } from './http/server.js';
import { checkDataUrl } from './images/fetch-image.js';
import { LocalImageStore } from './images/image-store.js';
import { InProcessJobEvents } from './jobs/job-events.js';
import { JobService } from './jobs/job-service.js';
import { SqliteJobStore } from './jobs/job-store.js';
import { isTerminal, type Job } from './jobs/job.js';
import { JobUpdater } from './jobs/job-updater.js';
import { JobAdmission } from './limits/job-admission.js';
import { type StoredState } from './limits/active-jobs.js';
import { RedisLeases } from './limits/leases.js';
import { LimitsRedis } from './limits/limits-redis.js';
import { RedisActiveJobs } from './limits/redis-active-jobs.js';
import { RedisTokenBuckets } from './limits/redis-token-buckets.js';
import { TokenBuckets } from './limits/token-buckets.js';
import { createLogger, type Logger } from './logger.js';
import { parseAllowHosts } from './net/address-policy.js';
import { checkOutboundUrl, outboundRefusal } from './net/guarded-agent.js';
import { InProcessRunner } from './runner/in-process-runner.js';
import { JobQueue } from './queue/job-queue.js';
import { QueueRunner } from './queue/queue-runner.js';
import { RedisBus } from './queue/redis-bus.js';
import { connectRedis } from './queue/redis-connection.js';
import { RedisJobEvents } from './queue/redis-job-events.js';
import { openDatabase, WalSync } from './storage/sqlite.js';
import { createWebhooks } from './webhooks/create-webhooks.js';

export interface App {
  /** Listens, resumes unfinished jobs; resolves to the base URL. */
  start(): Promise<string>;
  /** Graceful: stops accepting, closes sockets, waits for in-flight engine calls, closes the store. */
  stop(): Promise<void>;
  /** The API keys (main.ts makes the first one). */
  readonly keys: SqliteKeyStore;
  readonly logger: Logger;
}

/** Wires the whole server. Owns every socket, timer and handle it opens; stop() releases them all. */
export async function buildApp(config: Config): Promise<App> {
  const logger = createLogger(config.logLevel);
  const dbFile = path.join(config.dataDir, 'sd-api.sqlite');
  const db = openDatabase(dbFile);
  const walSync = new WalSync(dbFile, config.sqliteSynchronous === 'FULL');
  const keys = new SqliteKeyStore(db, walSync);
  const store = new SqliteJobStore(db, walSync);
  // REDIS_URL: jobs go to worker processes through BullMQ, and their events come back on Redis.
  const bus = config.queue ? new RedisBus(config.queue.redisUrl, config.queue.prefix, logger, `${config.queue.prefix}:api`) : null;
  const redisEvents = bus ? new RedisJobEvents(bus, (id) => store.get(id), logger) : null;
  const events = redisEvents ?? new InProcessJobEvents();
  const images = new LocalImageStore(config.dataDir);
  await images.init();
  const engine = await createEngine(config.engine, logger);
  const upstreamKeys = config.engine.kind === 'imagepipeline' ? config.engine.workers.flatMap((w) => (w.apiKey ? [w.apiKey] : [])) : [];
  const updater = new JobUpdater(store, events, images, logger, upstreamKeys);
  // REDIS_URL: the per-key limits hold across replicas, on a connection of their own that never
  // makes a request wait (limits/limits-redis.ts); each falls back as README's Running at scale says.
  const limitsRedis = config.queue
    ? new LimitsRedis(
        connectRedis(config.queue.redisUrl, 'fail-fast', `${config.queue.prefix}:limits`, logger),
        config.queue.prefix,
        logger,
      )
    : null;
  const { jobsPerMinute, burst } = config.admission;
  const admission = new JobAdmission(
    config.admission,
    limitsRedis
      ? {
          rate: jobsPerMinute > 0 ? new RedisTokenBuckets(limitsRedis, 'jobs', new TokenBuckets(burst, jobsPerMinute / 60)) : null,
          active: new RedisActiveJobs(limitsRedis, async (keyId, atMost) => {
            const page = await store.listForOwner(keyId, { status: ['PENDING', 'PROCESSING'], first: atMost });
            return page.edges.length;
          }),
        }
      : {},
  );
  const storedState = async (jobId: string): Promise<StoredState> => {
    const job = await store.get(jobId);
    return !job ? 'missing' : isTerminal(job.status) ? 'finished' : 'unfinished';
  };
  const wsLeases = limitsRedis ? new RedisLeases(limitsRedis, config.websocket.leaseMs) : null;

  const runner =
    config.queue && bus && redisEvents
      ? new QueueRunner({
          queue: new JobQueue(config.queue, bus.commands, logger),
          bus,
          events: redisEvents,
          store,
          updater,
          logger,
          reconcileIntervalMs: config.queue.reconcileIntervalMs,
          unfinishedCount: (ownerId) => admission.unfinishedCount(ownerId),
        })
      : new InProcessRunner(engine, store, updater, { poller: config.poller, submitConcurrency: config.submitter.concurrency }, logger);
  // Jobs end here (InProcessRunner; a cancel) or, with workers, wherever a worker runs them.
  const onFinished = (listener: (job: Job) => void) => {
    if (runner instanceof QueueRunner) runner.onFinished(listener);
    else updater.onFinished(listener);
  };
  onFinished((job) => admission.finished(job.ownerId, job.id));
  if (runner instanceof QueueRunner && redisEvents) {
    // Every end any worker announces, not only those of the jobs followed here: the count on
    // Redis is shared, and the replica that created the job may be gone. Then each reconciling
    // pass re-checks the count against the store.
    redisEvents
      .onFinished((job) => admission.finished(job.ownerId, job.id))
      .catch((err: unknown) => logger.warn({ err }, 'could not follow job ends for the per-key cap'));
    runner.onReconciled((active) =>
      admission
        .reconcile(active, storedState)
        .catch((err: unknown) =>
          logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not re-check the per-key cap'),
        ),
    );
  }

  let listeningUrl = `http://${config.host}:${config.port}`;
  const webhooks = createWebhooks({
    db,
    walSync,
    keys,
    jobs: store,
    config: config.webhooks,
    publicBaseUrl: () => config.publicUrl ?? listeningUrl,
    logger,
  });
  onFinished((job) => {
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
    {
      name: 'sd_jobs_tracked',
      help: 'Jobs the runner follows now: on their engine, or (with workers) to their end.',
      value: () => runner.trackedCount(),
    },
    { name: 'sd_job_subscriptions', help: 'Open jobStatus subscriptions (job event listeners).', value: () => events.listenerCount() },
    {
      name: 'sd_previews_total',
      help: 'Live previews made by this engine (only while a jobStatus subscriber selects progress.preview).',
      type: 'counter' as const,
      value: () => engine.previewsMade?.() ?? 0,
    },
  ];
  const http = createHttpServer({ config, logger, yoga, keys, jobs, images, gauges, sharedCounts: wsLeases });

  let stopping: Promise<void> | null = null;

  return {
    keys,
    logger,

    async start() {
      const url = await http.listen();
      listeningUrl = url;
      const active = await runner.start();
      // In memory: the unfinished jobs left by the last run. On Redis: the first reconciling pass does it.
      if (!limitsRedis) await admission.reconcile(active, storedState);
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
        await wsLeases?.close();
        await Promise.all([engine.close(), webhooks.close(), bus?.close(), limitsRedis?.close()]);
        await store.flush();
        db.pragma('wal_checkpoint(TRUNCATE)');
        walSync.close();
        db.close();
        logger.info('server stopped');
      })();
      return stopping;
    },
  };
}
