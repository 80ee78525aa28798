import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { buildApp, type App, type AppOptions } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { FakeImagePipeline } from '../fixtures/fake-imagepipeline.js';
import { readMetrics } from './metrics.js';

/** Starts this server on loopback against a fake upstream, with a fresh DATA_DIR and one key. */
export interface TestServer {
  app: App;
  url: string;
  dataDir: string;
  upstream: FakeImagePipeline;
  key: string;
  env: Record<string, string>;
  /** Runs a typed operation over HTTP. */
  gql<R, V>(doc: TypedDocumentNode<R, V>, variables?: V, key?: string | null): Promise<ExecutionResult<R>>;
  /** A graphql-ws client; closed by stop(). */
  ws(connectionParams?: Record<string, unknown>): Client;
  newKey(name: string): Promise<string>;
  /** GET /metrics, as name → value. */
  metrics(): Promise<Record<string, number>>;
  /** Stops the app (and, unless keepData, removes DATA_DIR and stops the upstream). */
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

/** The real local engine on the tiny models, polled every few milliseconds (the tests' jobs take about a second). */
export const LOCAL_ENGINE = { ENGINE: 'local', POLL_MIN_INTERVAL_MS: '5', POLL_MAX_INTERVAL_MS: '20' };

export const FAST_POLLING = {
  POLL_MIN_INTERVAL_MS: '10',
  POLL_MAX_INTERVAL_MS: '50',
  IMAGEPIPELINE_RETRIES: '1',
  LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
};

export async function startTestServer(
  options: { upstream?: FakeImagePipeline; dataDir?: string; env?: Record<string, string>; app?: AppOptions } = {},
): Promise<TestServer> {
  const upstream = options.upstream ?? new FakeImagePipeline();
  if (!options.upstream) await upstream.start();
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'sd-api-test-'));
  const env = {
    ...FAST_POLLING,
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    ENGINE: 'imagepipeline',
    IMAGEPIPELINE_URL: upstream.url,
    IMAGEPIPELINE_API_KEY: upstream.apiKey,
    ...options.env,
  };
  const app = await buildApp(loadConfig(env), options.app);
  const url = await app.start();
  const clients: Client[] = [];
  const key = (await app.keys.create('test')).key;

  return {
    app,
    url,
    dataDir,
    upstream,
    key,
    env,
    gql: (doc, variables, useKey = key) => gql(url, doc, variables, useKey),
    ws(connectionParams = { apiKey: key }) {
      const client = createClient({
        url: `${url.replace('http', 'ws')}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams,
        retryAttempts: 0,
        lazy: true,
      });
      clients.push(client);
      return client;
    },
    newKey: async (name) => (await app.keys.create(name)).key,
    metrics: () => readMetrics(url),
    async stop({ keepData = false } = {}) {
      await Promise.all(clients.map(async (c) => c.dispose()));
      await app.stop();
      if (!keepData) {
        if (!options.upstream) await upstream.stop();
        if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

export async function gql<R, V>(
  url: string,
  doc: TypedDocumentNode<R, V>,
  variables?: V,
  key?: string | null,
): Promise<ExecutionResult<R>> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key) headers['api-key'] = key;
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ query: print(doc), variables }),
  });
  return (await res.json()) as ExecutionResult<R>;
}

/** Collects every value of a subscription until it completes (or the timeout). */
export function collect<R, V>(
  client: Client,
  doc: TypedDocumentNode<R, V>,
  variables: V,
  timeoutMs = 10_000,
): Promise<{ values: R[]; errors: readonly unknown[] }> {
  return new Promise((resolve, reject) => {
    const values: R[] = [];
    const timer = setTimeout(() => {
      dispose();
      reject(new Error(`subscription did not complete in ${timeoutMs} ms; got ${JSON.stringify(values)}`));
    }, timeoutMs);
    const dispose = client.subscribe<R>(
      { query: print(doc), variables: variables as Record<string, unknown> },
      {
        next: (result) => {
          if (result.errors) {
            clearTimeout(timer);
            resolve({ values, errors: result.errors });
          } else if (result.data) values.push(result.data);
        },
        error: (err) => {
          clearTimeout(timer);
          resolve({ values, errors: [err] });
        },
        complete: () => {
          clearTimeout(timer);
          resolve({ values, errors: [] });
        },
      },
    );
  });
}

/** Polls a condition until it holds. */
export async function waitFor<T>(check: () => Promise<T | undefined | null | false> | T, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
