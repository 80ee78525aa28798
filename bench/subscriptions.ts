import { print } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { Pool } from 'undici';
import WebSocket from 'ws';
import { JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import type { Child } from './lib/child.js';
import { startBenchStack } from './lib/stack.js';
import { sleep } from './lib/load.js';

/**
 * Server memory per open jobStatus subscription. The server runs in its own process (so nothing
 * the client holds is counted) and measures itself after global.gc() twice; the fake upstream,
 * in a third process, holds every job queued so no subscription ever gets past its first value.
 */

export interface ServerStats {
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  rss: number;
  listeners: number;
  sockets: number;
  tracked: number;
}

export interface LayoutResult {
  label: string;
  sockets: number;
  perSocket: number;
  subscriptions: number;
  /** Subscriptions that got a right first value. */
  firstValues: number;
  errors: number;
  errorSamples: string[];
  openMs: number;
  before: ServerStats;
  open: ServerStats;
  /** Per subscription, in bytes. heapUsed + external (external already includes arrayBuffers). */
  perSubHeapExt: number;
  perSubRss: number;
  /** After every client was disposed. */
  after: ServerStats;
  drainedMs: number;
}

export interface MemoryResult {
  jobs: number;
  layouts: LayoutResult[];
  stop: { stopped: boolean; ms: number } | undefined;
}

const heapExt = (s: ServerStats) => s.heapUsed + s.external;

export async function runSubscriptionMemory(opts: {
  jobs: number;
  layouts: { label: string; sockets: number; perSocket: number }[];
}): Promise<MemoryResult> {
  // Fewer fsyncs while setting up; the memory figures do not depend on it.
  const stack = await startBenchStack({ hold: true, env: { SQLITE_SYNCHRONOUS: 'NORMAL' } });
  const { server } = stack;
  try {
    const { url, key } = server.ready;
    const ids = await createJobs(url, key, opts.jobs);
    // Every job submitted and tracked by the poller, and its queue position settled (the held
    // upstream reports the same position from now on, so no more job updates are published).
    await waitUntil(async () => (await server.request<ServerStats>('stats')).tracked === opts.jobs, 60_000, 'jobs tracked');
    await sleep(1_500);

    const layouts: LayoutResult[] = [];
    for (const layout of opts.layouts) {
      if (layout.sockets * layout.perSocket > ids.length) throw new Error(`layout ${layout.label} needs more jobs`);
      layouts.push(await measureLayout(server, url, key, ids, layout));
    }
    const stop = (await server.stop()) as { stopped: boolean; ms: number };
    return { jobs: ids.length, layouts, stop };
  } finally {
    await stack.close();
  }
}

async function measureLayout(
  server: Child<unknown>,
  url: string,
  key: string,
  ids: string[],
  layout: { label: string; sockets: number; perSocket: number },
): Promise<LayoutResult> {
  const before = await server.request<ServerStats>('stats');
  const query = print(JobStatusDocument);
  const clients: Client[] = [];
  const disposers: (() => void)[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  let firstValues = 0;
  const problem = (p: string) => {
    errors++;
    if (errorSamples.length < 5) errorSamples.push(p);
  };

  const started = performance.now();
  const waits: Promise<void>[] = [];
  // Open sockets a batch at a time (a connection storm measures the accept queue, not memory).
  const BATCH = 50;
  for (let s = 0; s < layout.sockets; s++) {
    const client = createClient({
      url: `${url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { apiKey: key },
      lazy: true,
      retryAttempts: 0,
      keepAlive: 0,
    });
    clients.push(client);
    for (let k = 0; k < layout.perSocket; k++) {
      const id = ids[s * layout.perSocket + k]!;
      waits.push(
        new Promise<void>((resolve) => {
          let first = true;
          const dispose = client.subscribe<{ jobStatus?: { id?: string; status?: string } }>(
            { query, operationName: 'JobStatus', variables: { id } },
            {
              next(result) {
                if (!first) return;
                first = false;
                if (result.errors) problem(`errors: ${JSON.stringify(result.errors).slice(0, 200)}`);
                else if (result.data?.jobStatus?.id !== id) problem(`wrong first value: ${JSON.stringify(result.data).slice(0, 200)}`);
                else if (result.data.jobStatus.status !== 'PENDING') problem(`job not PENDING: ${result.data.jobStatus.status}`);
                else firstValues++;
                resolve();
              },
              error(err) {
                if (first) problem(`subscription error: ${describe(err)}`);
                first = false;
                resolve();
              },
              complete() {
                if (first) problem('completed before its first value');
                first = false;
                resolve();
              },
            },
          );
          disposers.push(dispose);
        }),
      );
    }
    if ((s + 1) % BATCH === 0) await Promise.all(waits.slice(-BATCH * layout.perSocket));
  }
  await withTimeout(Promise.all(waits), 60_000, 'first values');
  const openMs = performance.now() - started;
  await sleep(500);
  const open = await server.request<ServerStats>('stats');

  // Close: unsubscribe every operation, then close every socket.
  const closing = performance.now();
  for (const dispose of disposers) dispose();
  await Promise.all(clients.map(async (c) => c.dispose()));
  let after = await server.request<ServerStats>('stats');
  const until = Date.now() + 10_000;
  while ((after.listeners !== 0 || after.sockets !== 0) && Date.now() < until) {
    await sleep(100);
    after = await server.request<ServerStats>('stats');
  }
  const subscriptions = layout.sockets * layout.perSocket;
  return {
    ...layout,
    subscriptions,
    firstValues,
    errors,
    errorSamples,
    openMs,
    before,
    open,
    perSubHeapExt: (heapExt(open) - heapExt(before)) / subscriptions,
    perSubRss: (open.rss - before.rss) / subscriptions,
    after,
    drainedMs: performance.now() - closing,
  };
}

/** Creates n text2image jobs over HTTP, 32 at a time; every reply is checked. */
async function createJobs(url: string, key: string, n: number): Promise<string[]> {
  const pool = new Pool(url, { connections: 32 });
  const body = JSON.stringify({
    query: print(Text2ImageDocument),
    operationName: 'Text2Image',
    variables: { input: { prompt: 'a lighthouse on a cliff at dusk, oil painting', numInferenceSteps: 20 } },
  });
  const ids: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const res = await pool.request({
        path: '/graphql',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'API-Key': key },
        body,
      });
      const text = await res.body.text();
      const r = JSON.parse(text) as { data?: { text2image?: { id?: string } }; errors?: unknown };
      if (res.statusCode !== 200 || r.errors || typeof r.data?.text2image?.id !== 'string') {
        throw new Error(`creating a job failed: HTTP ${res.statusCode} ${text.slice(0, 300)}`);
      }
      ids.push(r.data.text2image.id);
    }
  };
  try {
    await Promise.all(Array.from({ length: 32 }, worker));
  } finally {
    await pool.close();
  }
  return ids;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms))),
  ]);
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object' && 'code' in err) {
    const e = err as { code: unknown; reason?: unknown };
    return `socket closed ${String(e.code)} ${String(e.reason ?? '')}`;
  }
  return JSON.stringify(err)?.slice(0, 200) ?? String(err);
}
