import type { IncomingMessage } from 'node:http';
import { createYoga } from 'graphql-yoga';
import { apiKeyFromConnectionParams, apiKeyFromHeaders } from '../auth/credentials.js';
import type { KeyStore } from '../auth/key-store.js';
import type { Config } from '../config.js';
import type { CatalogueService } from '../engines/catalogue-service.js';
import type { ImageLinks } from '../images/image-links.js';
import type { JobService } from '../jobs/job-service.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { StorageUnavailableError, storageUnavailableAnswer } from '../storage/storage-fault.js';
import type { GraphQLContext } from '../schema/context.js';
import { createErrorMasker } from '../schema/errors.js';
import { schema } from '../schema/index.js';
import { graphqlLimitPlugins } from './graphql-limits.js';
import { useOperationMetrics } from './request-metrics.js';
import { useRequireApiKey } from './require-api-key.js';

export const GRAPHQL_PATH = '/graphql';

/** What the server hands yoga with each request: the node request, or the WebSocket's parameters. */
export type ServerContext = {
  req?: IncomingMessage;
  connectionParams?: Readonly<Record<string, unknown>>;
  wsBaseUrl?: string;
};

export interface GraphQLDeps {
  config: Config;
  logger: Logger;
  keys: KeyStore;
  jobs: JobService;
  models: CatalogueService;
  links: ImageLinks;
  metrics: Metrics;
}

/** GraphQL over HTTP (and, through graphql-websocket.ts, over WebSocket): yoga with the schema, GraphiQL, key and limit plugins. */
export function createGraphQL({ config, logger, keys, jobs, models, links, metrics }: GraphQLDeps) {
  const authenticate = async (key: string | null): Promise<Pick<GraphQLContext, 'principal' | 'authProblem' | 'authUnavailable'>> => {
    if (!key) return { principal: null, authProblem: null, authUnavailable: null };
    try {
      const principal = await keys.authenticate(key);
      return principal
        ? { principal, authProblem: null, authUnavailable: null }
        : { principal: null, authProblem: 'the API key is not valid', authUnavailable: null };
    } catch (err) {
      if (!(err instanceof StorageUnavailableError)) throw err;
      logger.warn({ err: err.cause }, `cannot check an API key: ${err.message}`);
      return { principal: null, authProblem: null, authUnavailable: storageUnavailableAnswer(err, 'check API keys') };
    }
  };
  return createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    // The HTTP server serves GraphiQL itself (http/graphiql.ts): compressed, cached, with a fetcher
    // that puts the key in the WebSocket's connection_init.
    graphiql: false,
    logging: {
      debug: (...args) => logger.debug(args.map(String).join(' ')),
      info: (...args) => logger.info(args.map(String).join(' ')),
      warn: (...args) => logger.warn(args.map(String).join(' ')),
      // Unexpected errors are logged by the error masker; what yoga reports here is mostly bad requests.
      error: (...args) => logger.debug(args.map(String).join(' ')),
    },
    maskedErrors: { maskError: createErrorMasker(logger) },
    plugins: [useOperationMetrics(metrics), useRequireApiKey(), ...graphqlLimitPlugins(config.graphqlLimits)],
    context: async ({ request, connectionParams, wsBaseUrl }) => ({
      ...(await authenticate(connectionParams ? apiKeyFromConnectionParams(connectionParams) : apiKeyFromHeaders(request.headers))),
      jobs,
      models,
      publicBaseUrl: wsBaseUrl ?? config.publicUrl ?? new URL(request.url).origin,
      links,
      idempotencyKey: connectionParams ? null : request.headers.get('idempotency-key'),
      webhookSecretOf: (keyId: string) => keys.webhookSecret(keyId),
    }),
  });
}

export type GraphQLHandler = ReturnType<typeof createGraphQL>;
