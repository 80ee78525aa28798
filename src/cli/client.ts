import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type FormattedExecutionResult, type GraphQLFormattedError } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { Connection } from './args.js';
import { AuthError, CliError, ExitCode, ServerError, UnreachableError } from './errors.js';

/** Long enough for a big data: URL upload on a slow link; a server that says nothing for this long is not coming back. */
const REQUEST_TIMEOUT_MS = 60_000;
const DOWNLOAD_TIMEOUT_MS = 120_000;

export interface SubscriptionSink<R> {
  next(data: R): void;
  error(error: CliError): void;
  complete(): void;
}

/**
 * The API as the CLI uses it: the typed documents of src/client/generated over HTTP (queries,
 * mutations) and graphql-ws (subscriptions), with every failure turned into a CliError that
 * says what happened and which exit code it means.
 */
export class ApiClient {
  private ws: Client | null = null;

  constructor(private readonly connection: Connection) {}

  get url(): string {
    return this.connection.url;
  }

  async request<R, V>(document: TypedDocumentNode<R, V>, variables: V): Promise<R> {
    const endpoint = `${this.connection.url}/graphql`;
    let status: number;
    let body: FormattedExecutionResult<R>;
    try {
      const res = await fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', 'API-Key': this.connection.key },
        body: JSON.stringify({ query: print(document), variables }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      status = res.status;
      const text = await res.text();
      try {
        body = JSON.parse(text) as FormattedExecutionResult<R>;
      } catch {
        throw new UnreachableError(`${endpoint} answered HTTP ${status} with something that is not a GraphQL response: is --url right?`);
      }
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw unreachable(this.connection.url, err);
    }
    const errors = body.errors ?? [];
    if (status === 401 || errors.some((e) => e.extensions?.code === 'UNAUTHENTICATED')) {
      throw new AuthError(`the server at ${this.connection.url} refused the API key: ${errors[0]?.message ?? `HTTP ${status}`}`);
    }
    if (errors.length > 0) throw new ServerError(errors, status);
    if (!body.data) throw new CliError(`${endpoint} answered HTTP ${status} without data`, ExitCode.FAILED);
    return body.data;
  }

  /** Runs a subscription over graphql-ws; returns a function that ends it. */
  subscribe<R, V>(document: TypedDocumentNode<R, V>, variables: V, sink: SubscriptionSink<R>): () => void {
    return this.socket().subscribe<R>(
      { query: print(document), variables: variables as Record<string, unknown> },
      {
        next: (result) => {
          if (result.errors?.length) sink.error(new ServerError(result.errors, 200));
          else if (result.data) sink.next(result.data);
        },
        error: (err) => sink.error(this.socketError(err)),
        complete: () => sink.complete(),
      },
    );
  }

  /**
   * Downloads one image. The key goes only to the server's own origin: images are served without
   * one (the unguessable name is the capability), and a download URL elsewhere (PUBLIC_URL
   * behind a proxy, a CDN) must not receive it.
   */
  async download(url: string): Promise<{ bytes: Buffer; contentType: string | null }> {
    const headers: Record<string, string> = {};
    if (new URL(url).origin === new URL(this.connection.url).origin) headers['API-Key'] = this.connection.key;
    let res: Response;
    try {
      res = await fetch(url, { headers, signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) });
      if (!res.ok) throw new CliError(`downloading ${url} failed: HTTP ${res.status}`, ExitCode.FAILED);
      return { bytes: Buffer.from(await res.arrayBuffer()), contentType: res.headers.get('content-type') };
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw unreachable(new URL(url).origin, err);
    }
  }

  async close(): Promise<void> {
    await this.ws?.dispose();
    this.ws = null;
  }

  private socket(): Client {
    this.ws ??= createClient({
      url: `${this.connection.url.replace(/^http/i, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { 'API-Key': this.connection.key },
      lazy: true,
      // A dropped connection is retried (the subscription sends the job's current state again
      // when it resumes); a refused key is not.
      retryAttempts: 5,
      shouldRetry: (err) => !isAuthClose(err),
    });
    return this.ws;
  }

  private socketError(err: unknown): CliError {
    if (isAuthClose(err)) return new AuthError(`the server at ${this.connection.url} refused the API key on its WebSocket`);
    if (Array.isArray(err)) return new ServerError(err as GraphQLFormattedError[], 200);
    if (isCloseEvent(err)) {
      const reason = err.reason ? `: ${err.reason}` : '';
      return new UnreachableError(`the WebSocket to ${this.connection.url} closed (code ${err.code}${reason})`);
    }
    return unreachable(this.connection.url, err);
  }
}

function isCloseEvent(err: unknown): err is { code: number; reason?: string } {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number';
}

/** 4401: no key in connection_init; 4403: a wrong or revoked key (see the README's API keys). */
function isAuthClose(err: unknown): boolean {
  return isCloseEvent(err) && (err.code === 4401 || err.code === 4403);
}

/** "fetch failed" says nothing: name the URL and the system's reason (ECONNREFUSED, ENOTFOUND, a time-out). */
function unreachable(url: string, err: unknown): UnreachableError {
  const cause = err instanceof Error ? (err.cause ?? err) : err;
  const code = typeof cause === 'object' && cause !== null && 'code' in cause ? String((cause as { code: unknown }).code) : '';
  const reason =
    err instanceof Error && err.name === 'TimeoutError'
      ? 'no answer in time'
      : code || (cause instanceof Error ? cause.message : String(cause));
  return new UnreachableError(`cannot reach the server at ${url} (${reason}); is it running? (--url or SD15_URL)`);
}
