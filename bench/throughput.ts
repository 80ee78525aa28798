import { print } from 'graphql';
import { CreateText2ImageDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { cpuPercent, cpuSample, startChild, type Child, type CpuSample } from './lib/child.js';
import { startBenchStack } from './lib/stack.js';
import { runLoad, type LoadResult } from './lib/load.js';

export interface ThroughputSettings {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** Fake upstream holds every job queued (true) or runs them to SUCCESS (false). */
  hold: boolean;
  /** Also called when the measured window opens and closes (to sample other processes, say). */
  onWindow?: (edge: 'open' | 'close') => void;
}

export interface RunResult extends LoadResult {
  label: string;
  /** Share of one core used in the measured window, per process. */
  cpu: { server: number; client: number; upstream: number | null };
  /** Ours only: what the background (dispatcher, poller) did by the end of the run. */
  upstream?: { submits: number; statusCalls: number; jobs: number };
  /** Ours only: whether app.stop() resolved afterwards (bounded by the child), and how long it took. */
  stop?: { stopped: boolean; ms: number };
}

const BASELINE_BODY = (n: number) => `{"query":"mutation Echo($n: Int!) { echo(n: $n) }","operationName":"Echo","variables":{"n":${n}}}`;

export async function runBaseline(label: string, s: ThroughputSettings): Promise<RunResult> {
  const server = await startChild<{ url: string }>('bench/servers/baseline-server.ts');
  try {
    return await measure(label, server, null, s, {
      origin: server.ready.url,
      headers: { 'content-type': 'application/json' },
      body: BASELINE_BODY,
      check(i, status, text) {
        if (status !== 200) return `HTTP ${status}: ${text.slice(0, 200)}`;
        const r = JSON.parse(text) as { data?: { echo?: number }; errors?: unknown };
        if (r.errors) return `errors: ${JSON.stringify(r.errors).slice(0, 200)}`;
        return r.data?.echo === i ? null : `wrong echo: ${text.slice(0, 200)}`;
      },
    });
  } finally {
    await server.stop();
  }
}

/**
 * Which typed document the load sends: `create` is CreateText2Image (id, status, queuePosition,
 * seed, createdAt: what a client reads before it subscribes), `full` is Text2Image with the whole
 * JobFields fragment (about 40 fields).
 */
export type Selection = 'create' | 'full';

const text2imageBody = (selection: Selection) =>
  JSON.stringify({
    query: print(selection === 'create' ? CreateText2ImageDocument : Text2ImageDocument),
    operationName: selection === 'create' ? 'CreateText2Image' : 'Text2Image',
    variables: {
      input: {
        prompt: 'a lighthouse on a cliff at dusk, oil painting',
        negativePrompt: 'blurry',
        numInferenceSteps: 20,
        width: 512,
        height: 512,
      },
    },
  });
const TEXT2IMAGE_BODIES: Record<Selection, string> = { create: text2imageBody('create'), full: text2imageBody('full') };

export async function runOurs(
  label: string,
  s: ThroughputSettings,
  env: Record<string, string> = {},
  selection: Selection = 'create',
): Promise<RunResult> {
  const stack = await startBenchStack({ hold: s.hold, env });
  const { server, upstream } = stack;
  try {
    const result = await measure(label, server, upstream, s, {
      origin: server.ready.url,
      headers: { 'content-type': 'application/json', 'API-Key': server.ready.key },
      body: () => TEXT2IMAGE_BODIES[selection],
      check(_i, status, text) {
        if (status !== 200) return `HTTP ${status}: ${text.slice(0, 200)}`;
        const r = JSON.parse(text) as { data?: { text2image?: { id?: unknown; status?: unknown } }; errors?: unknown };
        if (r.errors) return `errors: ${JSON.stringify(r.errors).slice(0, 300)}`;
        const job = r.data?.text2image;
        if (typeof job?.id !== 'string' || !job.id) return `no job id: ${text.slice(0, 200)}`;
        return job.status === 'PENDING' ? null : `new job not PENDING: ${String(job.status)}`;
      },
    });
    result.upstream = await upstream.request('stats');
    result.stop = (await server.stop()) as { stopped: boolean; ms: number };
    return result;
  } finally {
    await stack.close();
  }
}

async function measure(
  label: string,
  server: Child<unknown>,
  upstream: Child<unknown> | null,
  s: ThroughputSettings,
  o: Pick<Parameters<typeof runLoad>[0], 'origin' | 'headers' | 'body' | 'check'>,
): Promise<RunResult> {
  const samples: Record<'open' | 'close', { server: CpuSample; client: CpuSample; upstream: CpuSample | null }> = {} as never;
  const load = await runLoad({
    ...o,
    path: '/graphql',
    concurrency: s.concurrency,
    warmupMs: s.warmupMs,
    durationMs: s.durationMs,
    async onWindow(edge) {
      const [srv, up] = await Promise.all([
        server.request<CpuSample>('cpu'),
        upstream ? upstream.request<CpuSample>('cpu') : Promise.resolve(null),
      ]);
      samples[edge] = { server: srv, client: cpuSample(), upstream: up };
      s.onWindow?.(edge);
    },
  });
  const { open, close } = samples;
  return {
    ...load,
    label,
    cpu: {
      server: cpuPercent(open.server, close.server),
      client: cpuPercent(open.client, close.client),
      upstream: open.upstream && close.upstream ? cpuPercent(open.upstream, close.upstream) : null,
    },
  };
}
