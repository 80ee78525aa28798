import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type FormattedExecutionResult } from 'graphql';
import { ApiError, apiErrorFrom, NETWORK_DOWN } from './api-error';

/** The API is served by the same server as the studio, so the page's own origin. */
export const GRAPHQL_PATH = '/graphql';

const printed = new WeakMap<object, string>();

/** The document's text, printed once (the generated documents are ASTs). */
export function queryText(document: TypedDocumentNode<unknown, never>): string {
  let text = printed.get(document);
  if (text === undefined) {
    text = print(document);
    printed.set(document, text);
  }
  return text;
}

/** Runs a typed operation over HTTP with the key in the API-Key header; throws ApiError. */
export async function request<Result, Variables>(
  document: TypedDocumentNode<Result, Variables>,
  variables: Variables,
  apiKey: string,
): Promise<Result> {
  let response: Response;
  try {
    response = await fetch(GRAPHQL_PATH, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', 'api-key': apiKey },
      body: JSON.stringify({ query: queryText(document as TypedDocumentNode<unknown, never>), variables }),
    });
  } catch {
    throw new ApiError('network', NETWORK_DOWN);
  }
  let body: FormattedExecutionResult<Result>;
  try {
    body = (await response.json()) as FormattedExecutionResult<Result>;
  } catch {
    // A proxy's error page, or a connection cut mid-answer.
    throw new ApiError(
      response.status >= 500 || response.ok ? 'network' : 'server',
      `The server answered ${response.status} without a GraphQL reply.`,
    );
  }
  if (body.errors?.length) throw apiErrorFrom(body.errors, response.status);
  if (!body.data) throw new ApiError('server', `The server answered ${response.status} with no data.`);
  return body.data;
}
