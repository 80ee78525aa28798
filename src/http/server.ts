import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KeyStore } from '../auth/key-store.js';
import type { Config } from '../config.js';
import type { ImageLinks } from '../images/image-links.js';
import type { ImageStore } from '../images/image-store.js';
import type { JobService } from '../jobs/job-service.js';
import type { LeaseCounter } from '../limits/leases.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { bodyTooLarge } from './body-limit.js';
import { GRAPHQL_PATH, type GraphQLHandler } from './graphql.js';
import { createGraphQLWebSocketServer } from './graphql-websocket.js';
import { IMAGES_PATH, serveImage } from './image-routes.js';
import { createGraphiQLPage } from './graphiql.js';
import { HEALTH_PATH, READY_PATH, serveHealth, serveReady, type Readiness } from './health.js';
import { METRICS_PATH, serveMetrics } from './metrics.js';
import { measureRequest } from './request-metrics.js';
import { handleRest, REST_PREFIX } from './rest/rest-routes.js';
import type { StaticAsset } from './static-asset.js';
import { loadStudio } from './studio.js';

export interface HttpDeps {
  config: Config;
  logger: Logger;
  yoga: GraphQLHandler;
  keys: KeyStore;
  jobs: JobService;
  images: ImageStore;
  links: ImageLinks;
  /** What GET /metrics reports; this server adds its requests and open WebSocket connections. */
  metrics: Metrics;
  /** What GET /readyz asks. */
  readiness: Readiness;
  /** The WebSocket caps over every replica (REDIS_URL); absent: this process's own only. */
  sharedCounts?: LeaseCounter | null;
}

export interface HttpServer {
  /** Listens; resolves to the base URL clients reach it at. */
  listen(): Promise<string>;
  /** Stops accepting connections and closes every WebSocket (requests in flight go on). */
  closeSockets(): Promise<void>;
  /** Closes idle connections now and the rest after graceMs; resolves once the server is closed. */
  closeConnections(graceMs: number): Promise<void>;
}

/** Route label of a REST path: the contract's two endpoints, with the mode and id as placeholders. */
const REST_STATUS_ROUTE = /^\/sd\/[^/]+\/v1\/status\//;

/** One port: GraphQL over HTTP and WebSocket, GraphiQL, the web studio, the contract's REST API, images, /healthz, /readyz, /metrics. */
export function createHttpServer({
  config,
  logger,
  yoga,
  keys,
  jobs,
  images,
  links,
  metrics,
  readiness,
  sharedCounts,
}: HttpDeps): HttpServer {
  /** Base of absolute image URLs: PUBLIC_URL, or the Host the client used (node requests, and WebSocket upgrades). */
  const baseUrlOf = (req: IncomingMessage) => config.publicUrl ?? `http://${req.headers.host ?? `${config.host}:${config.port}`}`;

  const restDeps = {
    jobs,
    authenticate: (key: string) => keys.authenticate(key),
    publicBaseUrl: baseUrlOf,
    links,
    maxBodyBytes: config.maxRequestBodyBytes,
  };

  const graphiql = config.graphiql ? createGraphiQLPage({ title: 'SD 1.5 generation API' }) : null;
  const studio = config.studio ? loadStudio() : new Map<string, StaticAsset>();
  const serveAsset = (asset: StaticAsset, req: IncomingMessage, res: ServerResponse) =>
    asset.serve(req, res).catch((err: unknown) => {
      logger.error({ err }, 'serving a file failed');
      if (!res.headersSent) res.writeHead(500).end();
    });

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const path = url.split('?')[0]!;
    const asset = studio.get(path);
    if (asset) {
      measureRequest(metrics, req, res, 'studio');
      void serveAsset(asset, req, res);
    } else if (graphiql && path === GRAPHQL_PATH && wantsPage(req)) {
      measureRequest(metrics, req, res, 'graphiql');
      void serveAsset(graphiql, req, res);
    } else if (url.startsWith(IMAGES_PATH)) {
      measureRequest(metrics, req, res, `${IMAGES_PATH}{name}`);
      serveImage(images, req, res, logger).catch((err: unknown) => {
        logger.error({ err }, 'serving an image failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    } else if (url.startsWith(REST_PREFIX)) {
      measureRequest(metrics, req, res, REST_STATUS_ROUTE.test(path) ? '/sd/{mode}/v1/status/{id}' : '/sd/{mode}/v1');
      handleRest(restDeps, req, res).catch((err: unknown) => {
        logger.error({ err }, 'REST request failed');
        if (!res.headersSent)
          res.writeHead(500, { 'content-type': 'application/json' }).end('{"status":"FAILURE","error":"internal server error"}');
      });
    } else if (path === HEALTH_PATH) {
      measureRequest(metrics, req, res, HEALTH_PATH);
      serveHealth(res);
    } else if (path === READY_PATH) {
      measureRequest(metrics, req, res, READY_PATH);
      serveReady(readiness, req, res).catch((err: unknown) => {
        logger.error({ err }, 'readiness check failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    } else if (path === METRICS_PATH) {
      measureRequest(metrics, req, res, METRICS_PATH);
      serveMetrics(metrics.registry, req, res).catch((err: unknown) => {
        logger.error({ err }, 'collecting metrics failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    } else {
      measureRequest(metrics, req, res, path === GRAPHQL_PATH ? GRAPHQL_PATH : 'other');
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
    sharedCounts,
    logger,
  });
  metrics.sample('websocketConnections', () => websocket.socketCount());

  let listening = false;
  let closed: Promise<void> = Promise.resolve();

  return {
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      listening = true;
      const { port } = server.address() as AddressInfo;
      const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
      return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    },

    async closeSockets() {
      readiness.stopping();
      closed = listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
      await websocket.close();
    },

    async closeConnections(graceMs) {
      server.closeIdleConnections();
      const grace = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(grace);
    },
  };
}

/** A browser asking for a page (as yoga decides when to render GraphiQL): GET with text/html accepted. */
function wantsPage(req: IncomingMessage): boolean {
  return (req.method === 'GET' || req.method === 'HEAD') && (req.headers.accept ?? '').includes('text/html');
}
