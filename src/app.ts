import type { KeyStore } from './auth/key-store.js';
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
import { JobMetrics } from './jobs/job-metrics.js';
import { JobService } from './jobs/job-service.js';
import { isTerminal, type Job } from './jobs/job.js';
import { JobUpdater } from './jobs/job-updater.js';
import { type StoredState } from './limits/active-jobs.js';
import { JobAdmission } from './limits/job-admission.js';
import { RedisLeases } from './limits/leases.js';
import { LimitsRedis } from './limits/limits-redis.js';
import { RedisActiveJobs } from './limits/redis-active-jobs.js';
import { RedisTokenBuckets } from './limits/redis-token-buckets.js';
import { TokenBuckets } from './limits/token-buckets.js';
import { createLogger, jobLogger, type Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { parseAllowHosts } from './net/address-policy.js';
import { checkOutboundUrl, outboundRefusal } from './net/guarded-agent.js';
import { openStores } from './open-stores.js';
import { JobQueue } from './queue/job-queue.js';
import { QueueRunner } from './queue/queue-runner.js';
import { RedisBus } from './queue/redis-bus.js';
import { connectRedis } from './queue/redis-connection.js';
import { RedisJobEvents } from './queue/redis-job-events.js';
import { RetentionSweeper } from './retention/retention-sweeper.js';
import { InProcessRunner } from './runner/in-process-runner.js';
import { RunnerClaim } from './runner/runner-claim.js';
import { createWebhooks } from './webhooks/create-webhooks.js';
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
  // REDIS_URL: jobs go to worker processes through BullMQ, and their events come back on Redis.
  const bus = config.queue ? new RedisBus(config.queue.redisUrl, config.queue.prefix, logger, `${config.queue.prefix}:api`) : null;
  const redisEvents = bus ? new RedisJobEvents(bus, (id) => store.get(id), logger) : null;
  const events = redisEvents ?? new InProcessJobEvents();
  const images = createImageStore(config.imageStore);
  try {
    await images.init();
  } catch (err) {
    images.close();
    await Promise.all([stores.close(), bus?.close()]);
    throw new Error(`the image store ${images.location} cannot be used: ${(err as Error).message}`, { cause: err });
  }
  const links = new ImageLinks(images, config.imageUrls);
  const engine = await createEngine(config.engine, logger);
  const upstreamKeys = config.engine.kind === 'imagepipeline' && config.engine.apiKey ? [config.engine.apiKey] : [];
  const updater = new JobUpdater({ store, events, images, logger, ledger: retentionStore, secrets: upstreamKeys, now });
  const jobMetrics = new JobMetrics(metrics, clock);
  updater.onChange((before, after) => jobMetrics.changed(before, after));
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
  // On a shared database without a queue, one process may run jobs in process (see RunnerClaim).
  const claim = runner instanceof InProcessRunner && config.databaseUrl ? new RunnerClaim(stores.sweepLock, logger) : null;
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
    store: stores.webhooks,
    keys,
    jobs: store,
    config: config.webhooks,
    publicBaseUrl: () => config.publicUrl ?? listeningUrl,
    logger,
  });
  onFinished((job) => {
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
  // With workers (REDIS_URL), Redis is a dependency too: jobs are queued and followed there.
  const readiness = createReadiness(
    { database: () => store.ping(), images: () => images.ping(), ...(bus ? { redis: () => bus.ping() } : {}) },
    logger,
  );

  const yoga = createGraphQL({ config, logger, keys, jobs, models, links, metrics });
  const http = createHttpServer({ config, logger, yoga, keys, jobs, images, links, metrics, readiness, sharedCounts: wsLeases });

  let stopping: Promise<void> | null = null;

  return {
    keys,
    logger,
    metrics,
    retention,

    async start() {
      await claim?.take();
      const url = await http.listen();
      listeningUrl = url;
      const active = await runner.start();
      // In memory: the unfinished jobs left by the last run. On Redis: the first reconciling pass does it.
      if (!limitsRedis) await admission.reconcile(active, storedState);
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
        await wsLeases?.close();
        await Promise.all([engine.close(), webhooks.close(), bus?.close(), limitsRedis?.close(), claim?.release()]);
        images.close();
        await stores.close();
        logger.info('server stopped');
      })();
      return stopping;
    },
  };
}
