import type { GraphQLFormattedError } from 'graphql';

/**
 * What went wrong with a call to the API, sorted by what the person can do about it: reconnect,
 * fix the key, use another key, fix a field, wait, or report it.
 */
export type ApiErrorKind = 'network' | 'unauthenticated' | 'forbidden' | 'invalid-input' | 'rate-limited' | 'server';

/** A refused input field: its name in the API's input (prompt, width, initImage, ...) and why. */
export interface FieldIssue {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly kind: ApiErrorKind,
    message: string,
    readonly issues: FieldIssue[] = [],
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const NETWORK_DOWN = 'Cannot reach the server. Check your connection (and that the server is running), then try again.';
export const KEY_REFUSED = 'This API key was not accepted: it may be mistyped or revoked. Paste a valid key.';

interface IssueExtension {
  path?: (string | number)[];
  message?: string;
}

/** The first error of a GraphQL answer, as an ApiError (the HTTP status tells 401s from the rest). */
export function apiErrorFrom(errors: readonly GraphQLFormattedError[], httpStatus?: number): ApiError {
  const first = errors[0];
  const code = typeof first?.extensions?.code === 'string' ? first.extensions.code : undefined;
  const message = first?.message ?? `The server answered ${httpStatus ?? 'with an error'}.`;
  if (code === 'UNAUTHENTICATED' || httpStatus === 401) return new ApiError('unauthenticated', KEY_REFUSED, [], code);
  if (code === 'FORBIDDEN') return new ApiError('forbidden', `${capitalize(message)}.`, [], code);
  if (code === 'RATE_LIMITED') {
    const after = Number(first?.extensions?.retryAfter);
    const wait = Number.isFinite(after) && after > 0 ? ` Try again in ${Math.ceil(after)} s.` : ' Try again in a moment.';
    return new ApiError('rate-limited', `${capitalize(message)}.${wait}`, [], code);
  }
  if (code === 'BAD_USER_INPUT') {
    const raw = (first?.extensions?.issues ?? []) as IssueExtension[];
    const issues = raw.map((i) => ({ field: inputField(i.path ?? []), message: i.message ?? 'is not valid' }));
    return new ApiError('invalid-input', message, issues, code);
  }
  return new ApiError('server', message, [], code);
}

/** The input field an issue names: its path without the leading "input", and without list indexes (embeddings.1 → embeddings). */
function inputField(path: (string | number)[]): string {
  const names = path.filter((p): p is string => typeof p === 'string');
  return (names[0] === 'input' ? names[1] : names[0]) ?? '';
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1).replace(/\.$/, '');
}
