import type { IncomingMessage, Server } from 'node:http';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import type { Context } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import type { YogaServerInstance } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { apiKeyFromConnectionParams } from '../auth/credentials.js';
import type { KeyStore } from '../auth/key-store.js';
import { CLOSE_TOO_MANY, WebSocketSessions, type WebSocketLimits } from './websocket-sessions.js';
import type { LeaseCounter } from '../limits/leases.js';
import type { Logger } from '../logger.js';

export interface GraphQLWebSocketOptions extends WebSocketLimits {
  path: string;
  /** How long a client may take to send connection_init before the socket is closed (4408). */
  initTimeoutMs: number;
  /** How often open connections' keys are checked for revocation. */
  revocationCheckMs: number;
}

const ANONYMOUS = 'anonymous:';
/** WebSocket close code 1013, "try again later": the server cannot serve the connection now. */
const CLOSE_TRY_AGAIN_LATER = 1013;
const anonymousOwner = (req: IncomingMessage) => `${ANONYMOUS}${req.socket.remoteAddress ?? 'unknown'}`;

type WsContext = Context<Record<string, unknown>, { socket: import('ws').WebSocket; request: IncomingMessage }>;

/**
 * graphql-ws on the HTTP server's upgrade path, executing through yoga's envelop (same schema,
 * plugins, context and limits as HTTP). Per key: a cap on connections and on running
 * operations; a revoked key's connections are closed within revocationCheckMs.
 */
export function createGraphQLWebSocketServer(deps: {
  server: Server;
  yoga: YogaServerInstance<Record<string, unknown>, Record<string, unknown>>;
  keys: KeyStore;
  baseUrlOf: (req: IncomingMessage) => string;
  options: GraphQLWebSocketOptions;
  /** The caps over every replica (REDIS_URL); null: this process's own only. */
  sharedCounts?: LeaseCounter | null;
  logger: Logger;
}) {
  const { yoga, keys, options, logger } = deps;
  const sessions = new WebSocketSessions<WsContext>(options, deps.sharedCounts ?? null);
  const wss = new WebSocketServer({ server: deps.server, path: options.path });

  const wsServer = useServer<Record<string, unknown>, { socket: import('ws').WebSocket; request: IncomingMessage }>(
    {
      connectionInitWaitTimeout: options.initTimeoutMs,
      // A wrong key is refused at connection time; a missing one per operation (introspection works).
      onConnect: async (ctx) => {
        const key = apiKeyFromConnectionParams(ctx.connectionParams);
        let principal;
        try {
          principal = key === null ? null : await keys.authenticate(key);
        } catch (err) {
          // The key cannot be checked now (its database is unreachable): "try again later".
          logger.warn({ err }, 'cannot check the API key of a WebSocket connection');
          ctx.extra.socket.close(CLOSE_TRY_AGAIN_LATER, 'the API key cannot be checked now; retry later');
          return false;
        }
        if (key !== null && !principal) return false;
        // Without a key (introspection only) the cap applies per client address instead.
        const owner = principal ? principal.keyId : anonymousOwner(ctx.extra.request);
        if (!(await sessions.open(ctx, owner, ctx.extra.socket))) {
          // Closed here with our code; graphql-ws's own 4403 close that follows is ignored by ws.
          ctx.extra.socket.close(CLOSE_TOO_MANY, principal ? 'too many connections for this API key' : 'too many connections');
          return false;
        }
        return true;
      },
      onClose: (ctx) => sessions.close(ctx),
      onComplete: (ctx, id) => sessions.endOperation(ctx, id),
      execute: (args) => (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(args) as never,
      onSubscribe: async (ctx, id, params) => {
        const refusal = await sessions.startOperation(ctx, id);
        if (refusal) return [new GraphQLError(refusal, { extensions: { code: 'RATE_LIMITED' } })];
        const enveloped = yoga.getEnveloped({
          req: ctx.extra.request,
          connectionParams: ctx.connectionParams ?? {},
          wsBaseUrl: deps.baseUrlOf(ctx.extra.request),
          params,
        } as never);
        const fail = (errors: readonly GraphQLError[]) => {
          sessions.endOperation(ctx, id); // refused operations never reach onComplete
          return errors;
        };
        let document;
        try {
          document = enveloped.parse(params.query);
        } catch (err) {
          if (err instanceof Error && err.name === 'GraphQLError') return fail([err as GraphQLError]);
          throw err;
        }
        const args = {
          schema: enveloped.schema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue: await enveloped.contextFactory(),
          rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
        };
        const errors = enveloped.validate(args.schema, args.document);
        return errors.length > 0 ? fail(errors) : args;
      },
    },
    wss,
  );

  /** Keys of open connections found revoked; a key that cannot be checked now is left open. */
  const closeRevoked = async () => {
    const owners = sessions.owners().filter((owner) => !owner.startsWith(ANONYMOUS));
    const revoked = new Set<string>();
    await Promise.all(
      owners.map(async (owner) => {
        if (!(await keys.isActive(owner).catch(() => true))) revoked.add(owner);
      }),
    );
    const closed = sessions.closeRevoked((owner) => !revoked.has(owner));
    if (closed > 0) logger.info({ closed }, 'closed WebSocket connections of revoked API keys');
  };
  let checking: Promise<void> | null = null;
  const revocationTimer = setInterval(() => {
    checking ??= closeRevoked()
      .catch((err: unknown) => logger.error({ err }, 'checking WebSocket keys for revocation failed'))
      .finally(() => (checking = null));
  }, options.revocationCheckMs);
  revocationTimer.unref();

  return {
    socketCount: () => wss.clients.size,
    /** Closes every socket (1001) and the server. */
    async close(): Promise<void> {
      clearInterval(revocationTimer);
      await checking;
      for (const socket of wss.clients) socket.close(1001, 'server shutting down');
      await wsServer.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
