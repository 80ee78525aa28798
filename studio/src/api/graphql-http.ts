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

/**
 * Runs a typed operation over HTTP with the key in the API-Key header; throws ApiError. Files in
 * the variables (init and mask images) go as a GraphQL multipart request, the rest as JSON.
 */
export async function request<Result, Variables>(
  document: TypedDocumentNode<Result, Variables>,
  variables: Variables,
  apiKey: string,
): Promise<Result> {
  const files = new Map<string, File>();
  const operation = JSON.stringify({
    query: queryText(document as TypedDocumentNode<unknown, never>),
    variables: extractFiles(variables, 'variables', files),
  });
  const headers: Record<string, string> = { accept: 'application/graphql-response+json, application/json', 'api-key': apiKey };
  let body: string | FormData = operation;
  if (files.size === 0) headers['content-type'] = 'application/json';
  else body = multipart(operation, files); // the browser sets its content-type, with the boundary
  let response: Response;
  try {
    response = await fetch(GRAPHQL_PATH, { method: 'POST', headers, body });
  } catch {
    throw new ApiError('network', NETWORK_DOWN);
  }
  let answer: FormattedExecutionResult<Result>;
  try {
    answer = (await response.json()) as FormattedExecutionResult<Result>;
  } catch {
    // A proxy's error page, or a connection cut mid-answer.
    throw new ApiError(
      response.status >= 500 || response.ok ? 'network' : 'server',
      `The server answered ${response.status} without a GraphQL reply.`,
    );
  }
  if (answer.errors?.length) throw apiErrorFrom(answer.errors, response.status);
  if (!answer.data) throw new ApiError('server', `The server answered ${response.status} with no data.`);
  return answer.data;
}

/** The variables with each File replaced by null, the files noted by their path ("variables.input.initImageFile"). */
function extractFiles(value: unknown, path: string, files: Map<string, File>): unknown {
  if (value instanceof File) {
    files.set(path, value);
    return null;
  }
  if (Array.isArray(value)) return value.map((item, i) => extractFiles(item, `${path}.${i}`, files));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, extractFiles(item, `${path}.${key}`, files)]));
  }
  return value;
}

/** The GraphQL multipart request spec's body: the operation, the map of parts to variables, the parts. */
function multipart(operation: string, files: Map<string, File>): FormData {
  const form = new FormData();
  form.set('operations', operation);
  form.set('map', JSON.stringify(Object.fromEntries([...files.keys()].map((path, i) => [String(i), [path]]))));
  [...files.values()].forEach((file, i) => form.set(String(i), file, file.name));
  return form;
}
