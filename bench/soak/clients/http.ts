import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type OperationDefinitionNode } from 'graphql';
import { Pool } from 'undici';
import type { GqlError } from '../ledger.js';

/** HTTP to the server, shared by all keys: raw requests, GraphQL operations, image downloads. */

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const docInfo = new Map<object, { query: string; operationName: string }>();
/** A typed document's text and operation name, printed once. */
export function operation(doc: TypedDocumentNode<unknown, unknown>) {
  let i = docInfo.get(doc);
  if (!i) {
    const op = doc.definitions.find((d): d is OperationDefinitionNode => d.kind === 'OperationDefinition')!;
    i = { query: print(doc), operationName: op.name!.value };
    docInfo.set(doc, i);
  }
  return i;
}

export function parseJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return null;
  }
}

export class HttpApi {
  private readonly pool: Pool;

  constructor(url: string) {
    this.pool = new Pool(url, { connections: 48, keepAliveTimeout: 30_000 });
  }

  async http(method: 'GET' | 'POST', pathname: string, key: string | null, body?: string) {
    const headers: Record<string, string> = {};
    if (key) headers['api-key'] = key;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await this.pool.request({ path: pathname, method, headers, ...(body !== undefined ? { body } : {}) });
    const buf = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body: buf };
  }

  /** One GraphQL operation over HTTP; transport problems come back as a code. */
  async gql<TData, TVars>(
    key: string,
    doc: TypedDocumentNode<TData, TVars>,
    variables: TVars,
  ): Promise<{ data: TData | null; error: GqlError | null; transport: string | null }> {
    const { query, operationName } = operation(doc as TypedDocumentNode<unknown, unknown>);
    let res;
    try {
      res = await this.http('POST', '/graphql', key, JSON.stringify({ query, operationName, variables }));
    } catch (err) {
      return { data: null, error: null, transport: `GraphQL network ${(err as { code?: string }).code ?? (err as Error).message}` };
    }
    if (res.status >= 500) return { data: null, error: null, transport: `GraphQL HTTP ${res.status}` };
    try {
      const r = JSON.parse(res.body.toString('utf8')) as { data?: TData | null; errors?: GqlError[] };
      return { data: r.data ?? null, error: r.errors?.[0] ?? null, transport: null };
    } catch {
      return { data: null, error: null, transport: `GraphQL HTTP ${res.status} not JSON` };
    }
  }

  /** GET an image: HTTP 200, image/png, PNG bytes. Resolves to its size, 0 when it is not right. */
  async download(url: string): Promise<number> {
    const u = new URL(url);
    try {
      const res = await this.http('GET', u.pathname, null);
      const ok =
        res.status === 200 && String(res.headers['content-type']).startsWith('image/png') && res.body.subarray(0, 8).equals(PNG_SIGNATURE);
      return ok ? res.body.length : 0;
    } catch {
      return 0;
    }
  }

  close() {
    return this.pool.close();
  }
}
