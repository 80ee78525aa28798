import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SqliteKeyStore } from '../auth/key-store.js';
import type { Config } from '../config.js';
import type { LocalImageStore } from '../images/image-store.js';
import type { JobService } from '../jobs/job-service.js';
import type { LeaseCounter } from '../limits/leases.js';
import type { Logger } from '../logger.js';
import { bodyTooLarge } from './body-limit.js';
import { GRAPHQL_PATH, type GraphQLHandler } from './graphql.js';
import { createGraphQLWebSocketServer } from './graphql-websocket.js';
import { IMAGES_PATH, serveImage } from './image-routes.js';
import { createGraphiQLPage } from './graphiql.js';
import { METRICS_PATH, renderMetrics, type Gauge } from './metrics.js';
import { handleRest, REST_PREFIX } from './rest/rest-routes.js';
import type { StaticAsset } from './static-asset.js';
import { loadStudio } from './studio.js';

export interface HttpDeps {
  config: Config;
  logger: Logger;
  yoga: GraphQLHandler;
  keys: SqliteKeyStore;
  jobs: JobService;
  images: LocalImageStore;
  /** What GET /metrics reports (besides the open WebSocket connections, which this server knows). */
  gauges: readonly Gauge[];
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

/** One port: GraphQL over HTTP and WebSocket, GraphiQL, the web studio, the contract's REST API, images, /healthz, /metrics. */
export function createHttpServer({ config, logger, yoga, keys, jobs, images, gauges, sharedCounts }: HttpDeps): HttpServer {
  /** Base of absolute image URLs: PUBLIC_URL, or the Host the client used (node requests, and WebSocket upgrades). */
  const baseUrlOf = (req: IncomingMessage) => config.publicUrl ?? `http://${req.headers.host ?? `${config.host}:${config.port}`}`;

  const restDeps = {
    jobs,
    authenticate: (key: string) => keys.authenticate(key),
    publicBaseUrl: baseUrlOf,
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
      void serveAsset(asset, req, res);
    } else if (graphiql && path === GRAPHQL_PATH && wantsPage(req)) {
      void serveAsset(graphiql, req, res);
    } else if (url.startsWith(IMAGES_PATH)) {
      serveImage(images, req, res).catch((err: unknown) => {
        logger.error({ err }, 'serving an image failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    } else if (url.startsWith(REST_PREFIX)) {
      handleRest(restDeps, req, res).catch((err: unknown) => {
        logger.error({ err }, 'REST request failed');
        if (!res.headersSent)
          res.writeHead(500, { 'content-type': 'application/json' }).end('{"status":"FAILURE","error":"internal server error"}');
      });
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else if (url === METRICS_PATH && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(renderMetrics([...gauges, sockets]));
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
    sharedCounts,
    logger,
  });
  const sockets: Gauge = {
    name: 'sd_websocket_connections',
    help: 'Open GraphQL WebSocket connections.',
    value: () => websocket.socketCount(),
  };

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
