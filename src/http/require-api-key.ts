import { GraphQLError, Kind, type DocumentNode, type SelectionSetNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { GraphQLContext } from '../schema/context.js';

/**
 * Refuses every operation without a valid API key, except pure introspection: GraphiQL's Docs
 * pane and codegen work whatever key is sent (none, a placeholder, a wrong one), since the schema
 * is public. Runs for HTTP and WebSocket alike, before any resolver.
 */
export function useRequireApiKey(): Plugin<GraphQLContext> {
  const check = (document: DocumentNode, operationName: string | null | undefined, ctx: GraphQLContext) => {
    if (ctx.principal) return null;
    if (isIntrospectionOnly(document, operationName)) return null;
    const unavailable = ctx.authUnavailable;
    if (unavailable) {
      return new GraphQLError(unavailable.message, {
        extensions: {
          code: unavailable.code,
          ...unavailable.details,
          http: { status: unavailable.httpStatus, headers: { 'Retry-After': String(unavailable.details.retryAfter ?? 1) } },
        },
      });
    }
    return new GraphQLError(ctx.authProblem ?? 'an API key is required: send it in the API-Key header', {
      extensions: { code: 'UNAUTHENTICATED', http: { status: 401, headers: { 'WWW-Authenticate': 'API-Key' } } },
    });
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = check(args.document, args.operationName, args.contextValue);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = check(args.document, args.operationName, args.contextValue);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

function isIntrospectionOnly(document: DocumentNode, operationName: string | null | undefined): boolean {
  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operationName ? operations.find((o) => o.name?.value === operationName) : operations[0];
  if (!operation || operation.operation !== 'query') return false;
  const fragments = new Map(document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d] as const] : [])));
  const seen = new Set<string>();
  const onlyMeta = (set: SelectionSetNode): boolean =>
    set.selections.every((s) => {
      if (s.kind === Kind.FIELD) return s.name.value.startsWith('__');
      if (s.kind === Kind.INLINE_FRAGMENT) return onlyMeta(s.selectionSet);
      const name = s.name.value;
      if (seen.has(name)) return true;
      seen.add(name);
      const fragment = fragments.get(name);
      return fragment ? onlyMeta(fragment.selectionSet) : false;
    });
  return onlyMeta(operation.selectionSet);
}
