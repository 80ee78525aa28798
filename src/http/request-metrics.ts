import type { IncomingMessage, ServerResponse } from 'node:http';
import { getOperationAST, type DocumentNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Metrics } from '../metrics/metrics.js';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Counts and times an HTTP request once it is answered (or its connection closes). route is a
 * template the router chose (/images/{name}, never the name): labels stay few whatever clients send.
 */
export function measureRequest(metrics: Metrics, req: IncomingMessage, res: ServerResponse, route: string): void {
  const started = process.hrtime.bigint();
  const method = METHODS.has(req.method ?? '') ? req.method! : 'other';
  res.once('close', () => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics.httpRequests.inc({ route, method, status: String(res.statusCode) });
    metrics.httpDuration.observe({ route, method }, seconds);
  });
}

type OperationType = 'query' | 'mutation' | 'subscription' | 'unknown';

function operationType(document: DocumentNode | undefined, operationName: string | null | undefined): OperationType {
  if (!document) return 'unknown';
  return getOperationAST(document, operationName)?.operation ?? 'unknown';
}

const hasErrors = (result: unknown) => Array.isArray((result as { errors?: unknown } | null)?.errors);
const isAsyncIterable = (value: unknown): value is AsyncIterable<unknown> =>
  typeof (value as { [Symbol.asyncIterator]?: unknown } | null)?.[Symbol.asyncIterator] === 'function';

/**
 * GraphQL operations over HTTP and WebSocket (both run through yoga's envelop): counted by type
 * and outcome, queries and mutations timed, open subscriptions gauged. First among the plugins,
 * so that operations another plugin refuses (no API key) are counted too. Operation names are
 * the client's to choose, so they are not a label.
 */
export function useOperationMetrics(metrics: Metrics): Plugin {
  return {
    onValidate({ params }) {
      return ({ valid }) => {
        if (!valid) metrics.graphqlOperations.inc({ type: operationType(params.documentAST, undefined), status: 'invalid' });
      };
    },
    onExecute({ args }) {
      const type = operationType(args.document, args.operationName);
      const started = process.hrtime.bigint();
      return {
        onExecuteDone({ result }) {
          metrics.graphqlOperations.inc({ type, status: hasErrors(result) ? 'error' : 'ok' });
          metrics.graphqlDuration.observe({ type }, Number(process.hrtime.bigint() - started) / 1e9);
        },
      };
    },
    onSubscribe() {
      return {
        onSubscribeResult({ result }) {
          if (!isAsyncIterable(result)) {
            metrics.graphqlOperations.inc({ type: 'subscription', status: 'error' });
            return;
          }
          metrics.graphqlOperations.inc({ type: 'subscription', status: 'ok' });
          metrics.graphqlSubscriptions.inc();
          return { onEnd: () => metrics.graphqlSubscriptions.dec() };
        },
      };
    },
  };
}
