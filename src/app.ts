import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import { createYoga } from 'graphql-yoga';
import { apiKeyFromConnectionParams, apiKeyFromHeaders } from './auth/credentials.js';
import { createGraphQLWebSocketServer } from './graphql-websocket.js';
import { graphqlLimitPlugins } from './schema/limits.js';
import { bodyTooLarge } from './http-body-limit.js';
import { SqliteKeyStore } from './auth/key-store.js';
import { useRequireApiKey } from './schema/require-api-key.js';
import type { Config } from './config.js';
import { createEngine } from './engines/create-engine.js';
import type { Engine } from './engines/engine.js';
import { checkDataUrl } from './images/fetch-image.js';
import { IMAGES_PATH, serveImage } from './images/image-routes.js';
import { handleRest, REST_PREFIX } from './rest/rest-routes.js';
import { LocalImageStore } from './images/image-store.js';
import { InProcessJobEvents } from './jobs/job-events.js';
import { JobService } from './jobs/job-service.js';
import { SqliteJobStore } from './jobs/job-store.js';
import { JobUpdater } from './jobs/job-updater.js';
import { JobAdmission } from './limits/job-admission.js';
import { InProcessRunner } from './runner/in-process-runner.js';
import { parseAllowHosts } from './net/address-policy.js';
import { checkOutboundUrl, outboundRefusal } from './net/guarded-agent.js';
import { createWebhooks } from './webhooks/create-webhooks.js';
import { createLogger, type Logger } from './logger.js';
import { CatalogueService } from './engines/catalogue-service.js';
import type { GraphQLContext } from './schema/context.js';
import { createErrorMasker } from './schema/errors.js';
import { schema } from './schema/index.js';
import { openDatabase, WalSync, type SqliteDatabase } from './storage/sqlite.js';
import { GRAPHIQL_EXAMPLE } from './graphiql-example.js';

export const GRAPHQL_PATH = '/graphql';

export interface App {
  /** Listens, resumes unfinished jobs; resolves to the base URL. */
  start(): Promise<string>;
  /** Graceful: stops accepting, closes sockets, waits for in-flight engine calls, closes the store. */
  stop(): Promise<void>;
  readonly keys: SqliteKeyStore;
  readonly events: InProcessJobEvents;
  readonly runner: InProcessRunner;
  readonly logger: Logger;
  /** Open WebSocket connections. */
  socketCount(): number;
}

export interface AppOverrides {
  /** Use this engine instead of the configured one (tests, benchmarks). */
  engine?: Engine;
  logger?: Logger;
  /** Called with the open database (tests use it to make the disk look full). */
  onDatabaseOpen?: (db: SqliteDatabase) => void;
}

/** Wires the whole server. Owns every socket, timer and handle it opens; stop() releases them all. */
export async function buildApp(config: Config, overrides: AppOverrides = {}): Promise<App> {
  const logger = overrides.logger ?? createLogger(config.logLevel);
  const dbFile = path.join(config.dataDir, 'sd-api.sqlite');
  const db = openDatabase(dbFile);
  overrides.onDatabaseOpen?.(db);
  const walSync = new WalSync(dbFile, config.sqliteSynchronous === 'FULL');
  const keys = new SqliteKeyStore(db, walSync);
  const store = new SqliteJobStore(db, walSync);
  const events = new InProcessJobEvents();
  const images = new LocalImageStore(config.dataDir);
  await images.init();
  const engine = overrides.engine ?? (await createEngine(config.engine, logger));
  const upstreamKeys = config.engine.kind === 'imagepipeline' ? config.engine.workers.flatMap((w) => (w.apiKey ? [w.apiKey] : [])) : [];
  const updater = new JobUpdater(store, events, images, logger, upstreamKeys);
  const runner = new InProcessRunner(engine, store, updater, { poller: config.poller, submitConcurrency: config.dispatcher.concurrency }, logger);
  const admission = new JobAdmission(config.admission);
  updater.onFinished((job) => admission.finished(job.ownerId, job.id));

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
  updater.onFinished((job) => {
    webhooks.dispatcher
      .jobFinished(job)
      .catch((err: unknown) => logger.error({ err, jobId: job.id }, 'could not queue the webhook'));
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

  const authenticate = (key: string | null): Pick<GraphQLContext, 'principal' | 'authProblem'> => {
    if (!key) return { principal: null, authProblem: null };
    const principal = keys.authenticate(key);
    return principal ? { principal, authProblem: null } : { principal: null, authProblem: 'the API key is not valid' };
  };
  /** Base of absolute image URLs: PUBLIC_URL, or the Host the client used (node requests, and WebSocket upgrades). */
  const baseUrlOf = (req: IncomingMessage) => config.publicUrl ?? `http://${req.headers.host ?? `${config.host}:${config.port}`}`;

  type ServerContext = {
    req?: IncomingMessage;
    connectionParams?: Readonly<Record<string, unknown>>;
    wsBaseUrl?: string;
  };

  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    // Bundled GraphiQL: the default page loads its scripts from a CDN, which private networks lack.
    renderGraphiQL,
    logging: {
      debug: (...args) => logger.debug(args.map(String).join(' ')),
      info: (...args) => logger.info(args.map(String).join(' ')),
      warn: (...args) => logger.warn(args.map(String).join(' ')),
      // Unexpected errors are logged by the error masker; what yoga reports here is mostly bad requests.
      error: (...args) => logger.debug(args.map(String).join(' ')),
    },
    graphiql: config.graphiql
      ? {
          title: 'SD 1.5 generation API',
          subscriptionsProtocol: 'WS',
          defaultQuery: GRAPHIQL_EXAMPLE,
          headers: JSON.stringify({ 'API-Key': 'paste your key here' }, null, 2),
        }
      : false,
    maskedErrors: { maskError: createErrorMasker(logger) },
    plugins: [useRequireApiKey(), ...graphqlLimitPlugins(config.graphqlLimits)],
    context: ({ request, connectionParams, wsBaseUrl }) => ({
      ...authenticate(connectionParams ? apiKeyFromConnectionParams(connectionParams) : apiKeyFromHeaders(request.headers)),
      jobs,
      models,
      publicBaseUrl: wsBaseUrl ?? config.publicUrl ?? new URL(request.url).origin,
      idempotencyKey: connectionParams ? null : request.headers.get('idempotency-key'),
      webhookSecretOf: (keyId: string) => keys.webhookSecret(keyId),
    }),
  });

  const restDeps = {
    jobs,
    authenticate: (key: string) => keys.authenticate(key),
    publicBaseUrl: baseUrlOf,
    maxBodyBytes: config.maxRequestBodyBytes,
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url.startsWith(IMAGES_PATH)) {
      serveImage(images, req, res).catch((err: unknown) => {
        logger.error({ err }, 'serving an image failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    } else if (url.startsWith(REST_PREFIX)) {
      handleRest(restDeps, req, res).catch((err: unknown) => {
        logger.error({ err }, 'REST request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"status":"FAILURE","error":"internal server error"}');
      });
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else {
      const refusal = bodyTooLarge(req, config.maxRequestBodyBytes);
      if (refusal) {
        res.writeHead(refusal.status, { 'content-type': 'application/json', connection: 'close' });
        res.end(JSON.stringify({ errors: [{ message: refusal.message, extensions: { code: refusal.code } }] }));
        return;
      }
      void yoga(req, res);
    }
  });

  const websocket = createGraphQLWebSocketServer({
    server,
    yoga: yoga as never,
    keys,
    baseUrlOf,
    options: { path: GRAPHQL_PATH, ...config.websocket },
    logger,
  });

  let started = false;
  let stopping: Promise<void> | null = null;

  return {
    keys,
    events,
    runner,
    logger,
    socketCount: websocket.socketCount,

    async start() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      started = true;
      const active = await runner.start();
      for (const job of active) admission.started(job.ownerId, job.id);
      const { port } = server.address() as AddressInfo;
      const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
      const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
      listeningUrl = url;
      await webhooks.dispatcher.start();
      logger.info({ url: `${url}${GRAPHQL_PATH}`, resumedJobs: active.length, engine: engine.name }, 'server listening');
      return url;
    },

    stop() {
      stopping ??= (async () => {
        const closed = started ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
        await websocket.close();
        logger.debug('stop: sockets closed');
        // Engine calls in flight get the grace period; past it their jobs are simply resumed on the next start.
        let graceTimer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.all([runner.stop(), webhooks.dispatcher.stop()]),
          new Promise((resolve) => (graceTimer = setTimeout(resolve, config.shutdownGraceMs))),
        ]);
        clearTimeout(graceTimer);
        logger.debug('stop: runner and webhook deliveries idle');
        server.closeIdleConnections();
        const grace = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
        await closed;
        clearTimeout(grace);
        logger.debug('stop: http closed');
        await Promise.all([engine.close(), webhooks.close()]);
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
