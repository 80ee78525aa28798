import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { ApiError } from '../errors.js';
import { InputValidationError } from '../generation/input.js';
import { InvalidCursorError } from '../jobs/job-store.js';
import { StorageUnavailableError, storageUnavailableAnswer } from '../storage/storage-fault.js';

/**
 * Turns domain errors into GraphQL errors with a stable extensions.code, and hides everything
 * else behind a generic message (the full error goes to the log, never to the client).
 */
export function createErrorMasker(logger: Logger) {
  return (error: unknown): Error => {
    const graphqlError = isGraphQLError(error) ? error : null;
    let original = unwrap(error);
    if (original instanceof StorageUnavailableError) {
      // A read or a change the database could not take: the client may retry (creates say so themselves).
      logger.warn({ err: original.cause, path: graphqlError?.path }, `a GraphQL operation failed: ${original.message}`);
      original = storageUnavailableAnswer(original);
    }
    const at = graphqlError ? { nodes: graphqlError.nodes, path: graphqlError.path } : {};

    if (original instanceof InputValidationError) {
      return new GraphQLError(`Invalid input: ${original.message}`, {
        ...at,
        extensions: {
          code: 'BAD_USER_INPUT',
          issues: original.issues.map((i) => ({ ...i, field: i.path.join('.') })),
        },
      });
    }
    if (original instanceof InvalidCursorError) {
      return new GraphQLError(original.message, {
        ...at,
        extensions: {
          code: 'BAD_USER_INPUT',
          issues: [{ path: ['after'], field: 'after', code: 'INVALID_CURSOR', message: original.message }],
        },
      });
    }
    if (original instanceof ApiError) {
      return new GraphQLError(original.message, {
        ...at,
        extensions: {
          code: original.code,
          ...original.details,
          ...(original.httpStatus === 401 ? { http: { status: 401 } } : {}),
          ...(original.httpStatus === 429 || original.httpStatus === 503
            ? { http: { status: original.httpStatus, headers: { 'Retry-After': String(original.details.retryAfter ?? 1) } } }
            : {}),
        },
      });
    }
    // Errors graphql-js raised itself (syntax, validation, variable coercion) are safe to show.
    // The outer error keeps the context (which variable, which field) and any HTTP status.
    if (isGraphQLError(original)) return graphqlError ?? original;
    logger.error({ err: original ?? error, path: graphqlError?.path }, 'unexpected error in a GraphQL operation');
    return new GraphQLError('Internal server error', { ...at, extensions: { code: 'INTERNAL_SERVER_ERROR' } });
  };
}

/**
 * By name, not instanceof: graphql can be loaded twice (its CommonJS and ESM builds), and an
 * error from one copy is not an instance of the other's class.
 */
function isGraphQLError(error: unknown): error is GraphQLError {
  return error instanceof Error && error.name === 'GraphQLError';
}

/** The error a resolver threw, under any GraphQLError wrappers. */
function unwrap(error: unknown): unknown {
  let current = error;
  while (isGraphQLError(current) && current.originalError) current = current.originalError;
  return current;
}
