import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startChild, type Child } from './child.js';

export interface BenchStack {
  upstream: Child<{ url: string; apiKey: string }>;
  server: Child<{ url: string; key: string }>;
  /** Stops both processes and removes the DATA_DIR. */
  close(): Promise<void>;
}

/**
 * This server (its own process, a fresh DATA_DIR, the imagepipeline engine) in front of the
 * fake upstream test fixture (another process): what both benchmarks measure.
 */
export async function startBenchStack(opts: { hold: boolean; env?: Record<string, string> }): Promise<BenchStack> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'sd-api-bench-'));
  const upstream = await startChild<{ url: string; apiKey: string }>('bench/servers/upstream-server.ts', {
    UPSTREAM_HOLD: String(opts.hold),
  });
  const cleanup = async (server?: Child<unknown>) => {
    await server?.stop();
    await upstream.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  let server: Child<{ url: string; key: string }>;
  try {
    server = await startChild<{ url: string; key: string }>('bench/servers/app-server.ts', {
      DATA_DIR: dataDir,
      ENGINE: 'imagepipeline',
      IMAGEPIPELINE_URL: upstream.ready.url,
      IMAGEPIPELINE_API_KEY: upstream.ready.apiKey,
      // One key drives the whole load here: per-key limits would measure the limiter, not the server.
      RATE_LIMIT_JOBS_PER_MINUTE: '0',
      MAX_ACTIVE_JOBS_PER_KEY: '0',
      WS_MAX_CONNECTIONS_PER_KEY: '0',
      WS_MAX_SUBSCRIPTIONS_PER_KEY: '0',
      ...opts.env,
    });
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { upstream, server, close: () => cleanup(server) };
}
