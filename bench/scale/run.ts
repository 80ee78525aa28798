import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { print, type DocumentNode } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import WebSocket from 'ws';
import {
  CreateText2ImageDocument,
  FollowJobDocument,
  JobSummaryDocument,
  type FollowJobSubscription,
  type JobSummaryQuery,
} from '../../src/client/generated/graphql.js';
import { sleep } from '../lib/load.js';
import { runBaseline, runOurs, type RunResult, type ThroughputSettings } from '../throughput.js';
import { startCpuWindow, type CpuFigures } from './cpu.js';
import { createSchema, newPrefix, removePrefix, unavailable, type BenchSchema } from './infra.js';
import { POLL_ENV, POLL_LABEL, type PollMode, type ScaleOptions } from './options.js';
import { atInterrupt, startApi, startWorker, stopAll, type ApiProc, type WorkerProc } from './procs.js';

export interface BatchResult {
  poll: PollMode;
  workers: number;
  jobs: number;
  succeeded: number;
  failed: number;
  /** From the first create sent to the last answer. */
  createMs: number;
  /** From the first create sent to the last job's end announced on Redis (seen here). */
  spanMs: number;
  jobsPerMinute: number;
  /** Jobs of the batch each worker ran. */
  perWorker: number[];
  /** Engine start to end (the job's startedAt..finishedAt), per job. */
  runMs: Float64Array;
  cpu: CpuFigures;
}

export interface LatencyResult {
  jobs: number;
  succeeded: number;
  /** Create sent (client) -> the worker's "running the job" line. */
  sendToWorker: Float64Array;
  /** The job's createdAt (stamped by API A) -> the worker's "running the job" line. */
  createdToWorker: Float64Array;
  /** createdAt -> startedAt (the local engine's own start of the generation). */
  createdToEngine: Float64Array;
  /** Per event: seen on Redis here -> B's subscriber here (ms, one clock). */
  events: Float64Array;
  /** Per job: the worker's "job finished" line (just after it published the end) -> B's subscriber got SUCCESS (ms). */
  endEvents: Float64Array;
  /** Events published after B's subscription held (the ones that count). */
  eventsPublished: number;
  /** Of those, values B's subscriber got (the rest were coalesced: JobStream keeps the newest step). */
  eventsMatched: number;
  /** Keys seen twice (the same status and step again): not counted. */
  eventsAmbiguous: number;
  cpu: CpuFigures;
}

export interface ThroughputRows {
  baselines: RunResult[];
  embedded: RunResult;
  postgres: RunResult;
  queue: RunResult;
  /** Per run label: the machine's CPU in its measured window (postgres, redis, the rest). */
  machine: Map<string, CpuFigures>;
}

export interface ScaleResult {
  skipped: string | null;
  options: ScaleOptions;
  startupMs: number;
  batches: BatchResult[];
  latency: LatencyResult | null;
  throughput: ThroughputRows | null;
  stops: { label: string; ms: number; killed: boolean; code: number | null }[];
  /** Warnings and errors the processes logged, and anything else that went wrong. */
  problems: string[];
}

interface Ctx {
  o: ScaleOptions;
  a: ApiProc;
  b: ApiProc;
  key: string;
  pool: Pool;
  prefix: string;
  /** Job id -> when its end was announced on Redis (seen here, epoch ms) and how it ended. */
  finished: Map<string, { at: number; status: string }>;
  workerEnv: Record<string, string>;
  workers: WorkerProc[];
  log: (line: string) => void;
}

/**
 * The scale-out section from start to end. Jobs per minute and the latencies run on the real
 * processes (API replicas A and B, 1..n workers) over Postgres (a schema of the run's) and Redis
 * (a prefix of the run's); then the mutation throughput runs (bench/throughput.ts) with Postgres
 * and with Postgres + Redis, against bare yoga and beside the embedded SQLite server. Everything
 * started is stopped and everything made is removed, also when a step fails.
 */
export async function runScale(
  o: ScaleOptions,
  settings: ThroughputSettings,
  log: (line: string) => void = console.log,
): Promise<ScaleResult> {
  const result: ScaleResult = {
    skipped: null,
    options: o,
    startupMs: 0,
    batches: [],
    latency: null,
    throughput: null,
    stops: [],
    problems: [],
  };
  const why = await unavailable(o.databaseUrl, o.redisUrl);
  if (why) {
    result.skipped = why;
    return result;
  }

  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sd-api-scale-'));
  const prefix = newPrefix('jobs');
  let schema: BenchSchema | null = null;
  let pool: Pool | null = null;
  let sub: Redis | null = null;
  let apis: ApiProc[] = [];
  const workers: WorkerProc[] = [];
  /** Every worker started, also those stopped between batches (for their logged problems). */
  const everWorker: WorkerProc[] = [];
  const startW = async (env: Record<string, string>) => {
    const w = await startWorker(`worker ${workers.length + 1}`, env);
    everWorker.push(w);
    workers.push(w);
  };
  const stopW = async () => {
    const w = workers.pop()!;
    result.stops.push({ label: w.label, ...(await w.stop()) });
  };
  const removeAll = async () => {
    await schema?.drop().catch((err: unknown) => result.problems.push(`could not drop ${schema?.name}: ${String(err)}`));
    await removePrefix(o.redisUrl, prefix).catch((err: unknown) => result.problems.push(`could not remove ${prefix}:*: ${String(err)}`));
    rmSync(dataDir, { recursive: true, force: true });
  };
  const forget = atInterrupt(removeAll);
  try {
    schema = await createSchema(o.databaseUrl, 'jobs');
    const common = {
      ENGINE: 'local',
      DATA_DIR: dataDir,
      DATABASE_URL: schema.url,
      REDIS_URL: o.redisUrl,
      REDIS_PREFIX: prefix,
      HOST: '127.0.0.1',
      LOG_FORMAT: 'json',
      // One key creates every job: its limits would measure the limiter, not the queue.
      RATE_LIMIT_JOBS_PER_MINUTE: '0',
      MAX_ACTIVE_JOBS_PER_KEY: '0',
    };
    const apiEnv = { ...common, PORT: '0', LOG_LEVEL: 'warn' };
    // Info: the workers' "running the job" lines are the worker-side time of the queue latency.
    const workerEnv = { ...common, WORKER_CONCURRENCY: '1', LOG_LEVEL: 'info' };
    log(
      `  Postgres schema ${schema.name}, Redis prefix ${prefix}, DATA_DIR ${dataDir}; ENGINE=local (tiny models, built by A), ` +
        `WORKER_CONCURRENCY=1, per-key limits off (one key)`,
    );

    const t0 = performance.now();
    // A first: it builds the tiny models in DATA_DIR, applies the migrations and prints the key.
    const a = await startApi('api A', apiEnv);
    apis = [a];
    const b = await startApi('api B', apiEnv);
    apis = [a, b];
    if (!a.firstKey) throw new Error(`api A printed no first-start key:\n${a.tail()}`);
    result.startupMs = performance.now() - t0;
    log(`  API replicas up in ${(result.startupMs / 1000).toFixed(1)} s: A ${a.url} (pid ${a.pid}), B ${b.url} (pid ${b.pid})`);

    sub = redisClient(o.redisUrl);
    const finished = new Map<string, { at: number; status: string }>();
    sub.on('message', (_channel: string, message: string) => {
      const at = Date.now();
      const j = envelopeJob(message);
      if (j && !finished.has(j.id)) finished.set(j.id, { at, status: j.status });
    });
    await sub.subscribe(`${prefix}:finished`);
    pool = new Pool(a.url, { connections: 16, pipelining: 1 });
    const ctx: Ctx = { o, a, b, key: a.firstKey, pool, prefix, finished, workerEnv, workers, log };

    // Jobs per minute, per poll setting, with 1 then 2 (BENCH_SCALE_WORKERS) workers.
    for (const poll of o.polls) {
      for (const n of o.workers) {
        while (workers.length < n) await startW({ ...workerEnv, ...POLL_ENV[poll] });
        while (workers.length > n) await stopW();
        await warmUp(ctx, o.size, o.steps);
        const r = await batch(ctx, poll, o.jobs);
        result.batches.push(r);
        log(
          `  ${POLL_LABEL[poll]}, ${n} worker${n > 1 ? 's' : ''}: ${r.succeeded}/${r.jobs} SUCCESS in ${(r.spanMs / 1000).toFixed(2)} s ` +
            `= ${r.jobsPerMinute.toFixed(0)} jobs/min`,
        );
      }
      // The next poll setting is the workers' own: start them afresh.
      if (poll !== o.polls.at(-1)) while (workers.length > 0) await stopW();
    }

    // Latencies with the last workers (idle, warmed), one job at a time.
    await warmUp(ctx, o.latencySize, o.latencySteps, 2);
    result.latency = await latencies(ctx);
    log(
      `  latencies: ${result.latency.jobs} jobs one at a time, ${result.latency.eventsMatched}/${result.latency.eventsPublished} events matched on B`,
    );
  } catch (err) {
    result.problems.push(`the queue part failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } finally {
    await pool?.close().catch(() => {});
    sub?.disconnect();
    result.stops.push(...(await stopAll()));
    for (const p of [...everWorker, ...apis]) for (const line of p.problems) result.problems.push(`${p.label}: ${line}`);
    await removeAll();
    forget();
  }

  if (o.throughput) {
    try {
      result.throughput = await throughputRows(o, settings, log);
    } catch (err) {
      result.problems.push(`the throughput part failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Jobs per minute

/** Until every worker has run a job of this size (its first loads the models), a job per worker at once. */
async function warmUp(ctx: Ctx, size: number, steps: number, rounds = 1): Promise<void> {
  const ran = new Set<WorkerProc>();
  for (let round = 0; round < 8 && (round < rounds || ctx.workers.some((w) => !ran.has(w))); round++) {
    const ids = await Promise.all(ctx.workers.map(() => create(ctx, size, steps)));
    await waitUntil(() => ids.every((j) => ctx.finished.has(j.id)), 60_000, 'warm-up jobs');
    for (const w of ctx.workers) if (ids.some((j) => w.taken.has(j.id))) ran.add(w);
  }
}

async function batch(ctx: Ctx, poll: PollMode, jobs: number): Promise<BatchResult> {
  const { o, workers } = ctx;
  const window = startCpuWindow([
    { label: 'api A', pid: ctx.a.pid },
    { label: 'api B', pid: ctx.b.pid },
    ...workers.map((w) => ({ label: w.label, pid: w.pid })),
  ]);
  const t0 = Date.now();
  const created = await Promise.all(Array.from({ length: jobs }, () => create(ctx, o.size, o.steps)));
  const createMs = Date.now() - t0;
  const ids = created.map((j) => j.id);
  await waitUntil(() => ids.every((id) => ctx.finished.has(id)), 120_000 + jobs * 5_000, `the batch of ${jobs} jobs`);
  const last = Math.max(...ids.map((id) => ctx.finished.get(id)!.at));
  const cpu = window.end();
  const states = await Promise.all(ids.map((id) => summary(ctx, id)));
  const spanMs = last - t0;
  return {
    poll,
    workers: workers.length,
    jobs,
    succeeded: states.filter((s) => s?.status === 'SUCCESS').length,
    failed: states.filter((s) => s?.status !== 'SUCCESS').length,
    createMs,
    spanMs,
    jobsPerMinute: (jobs / spanMs) * 60_000,
    perWorker: workers.map((w) => ids.filter((id) => w.taken.has(id)).length),
    runMs: Float64Array.from(
      states.flatMap((s) => (s?.startedAt && s.finishedAt ? [Date.parse(s.finishedAt) - Date.parse(s.startedAt)] : [])),
    ),
    cpu,
  };
}

// ---------------------------------------------------------------------------------------------
// Queue and event latency

async function latencies(ctx: Ctx): Promise<LatencyResult> {
  const { o, prefix } = ctx;
  // What the worker published, as Redis hands it out: the same fan-out that reaches replica B.
  const events = redisClient(o.redisUrl);
  const commands = redisClient(o.redisUrl);
  const onRedis = new Map<string, number[]>();
  events.on('pmessage', (_pattern: string, _channel: string, message: string) => {
    const at = performance.now();
    const j = envelopeJob(message);
    if (!j) return;
    const k = eventKey(j.id, j.status, j.progress?.step);
    let list = onRedis.get(k);
    if (!list) onRedis.set(k, (list = []));
    list.push(at);
  });
  await events.psubscribe(`${prefix}:job:*`);
  const ws: Client = createClient({
    url: `${ctx.b.url.replace('http', 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: { apiKey: ctx.key },
    retryAttempts: 0,
    lazy: false,
  });
  await new Promise<void>((resolve, reject) => {
    const off = ws.on('connected', () => (off(), resolve()));
    ws.on('error', reject);
  });

  const sendToWorker: number[] = [];
  const createdToWorker: number[] = [];
  const createdToEngine: number[] = [];
  const lat: number[] = [];
  const endEvents: number[] = [];
  let published = 0;
  let matched = 0;
  let ambiguous = 0;
  let succeeded = 0;
  const window = startCpuWindow([
    { label: 'api A', pid: ctx.a.pid },
    { label: 'api B', pid: ctx.b.pid },
    ...ctx.workers.map((w) => ({ label: w.label, pid: w.pid })),
  ]);
  try {
    for (let i = 0; i < o.latencyJobs; i++) {
      const sent = Date.now();
      const job = await create(ctx, o.latencySize, o.latencySteps);
      const onB = new Map<string, number[]>();
      let firstValueAt = Infinity;
      let successAt = NaN;
      const done = new Promise<string>((resolve, reject) => {
        let last = '';
        ws.subscribe<FollowJobSubscription>(
          { query: print(FollowJobDocument), variables: { id: job.id } },
          {
            next: (r) => {
              const at = performance.now();
              const wall = Date.now();
              if (r.errors || !r.data) return reject(new Error(JSON.stringify(r.errors)));
              const j = r.data.jobStatus;
              if (firstValueAt === Infinity) firstValueAt = at;
              const k = eventKey(j.id, j.status, j.progress.step);
              let list = onB.get(k);
              if (!list) onB.set(k, (list = []));
              list.push(at);
              last = j.status;
              if (j.status === 'SUCCESS') successAt = wall;
            },
            error: (err) => reject(err instanceof Error ? err : new Error(JSON.stringify(err))),
            complete: () => resolve(last),
          },
        );
      });
      done.catch(() => {});
      // When Redis has B subscribed to the job's channel: events published after it reach B by pub/sub.
      const heldAt = await subscribedAt(commands, `${prefix}:job:${job.id}`, done);
      const status = await withTimeout(done, 60_000, `job ${job.id} on B`);
      if (status === 'SUCCESS') succeeded++;
      await sleep(20); // the last events in flight, and an empty queue for the next job

      const cut = Math.max(heldAt + 1, firstValueAt);
      for (const [k, atRedis] of onRedis) {
        if (!k.startsWith(`${job.id}|`) || atRedis[0]! <= cut) continue;
        published++;
        const atB = onB.get(k);
        if (atRedis.length > 1 || (atB && atB.length > 1)) ambiguous++;
        else if (atB) {
          matched++;
          lat.push(atB[0]! - atRedis[0]!);
        }
      }

      const state = await summary(ctx, job.id);
      const worker = await waitUntil(() => ctx.workers.find((w) => w.taken.has(job.id)), 5_000, `the worker's line for job ${job.id}`);
      const took = worker.taken.get(job.id)!;
      const createdAt = Date.parse(job.createdAt);
      sendToWorker.push(took - sent);
      createdToWorker.push(took - createdAt);
      if (state?.startedAt) createdToEngine.push(Date.parse(state.startedAt) - createdAt);
      const endLogged = await waitUntil(() => worker.ended.get(job.id), 5_000, `the worker's end line for job ${job.id}`);
      if (Number.isFinite(successAt)) endEvents.push(successAt - endLogged);
    }
  } finally {
    await ws.dispose();
    events.disconnect();
    commands.disconnect();
  }
  return {
    jobs: o.latencyJobs,
    succeeded,
    sendToWorker: Float64Array.from(sendToWorker),
    createdToWorker: Float64Array.from(createdToWorker),
    createdToEngine: Float64Array.from(createdToEngine),
    events: Float64Array.from(lat),
    endEvents: Float64Array.from(endEvents),
    eventsPublished: published,
    eventsMatched: matched,
    eventsAmbiguous: ambiguous,
    cpu: window.end(),
  };
}

/**
 * performance.now() once PUBSUB NUMSUB reports a subscriber of the channel (B's); Infinity if
 * the subscription ended first (then none of the job's events count) or none came in 5 s.
 */
async function subscribedAt(commands: Redis, channel: string, done: Promise<unknown>): Promise<number> {
  let ended = false;
  done.then(
    () => (ended = true),
    () => (ended = true),
  );
  const deadline = performance.now() + 5_000;
  while (!ended && performance.now() < deadline) {
    const reply = (await commands.pubsub('NUMSUB', channel)) as [string, number];
    if (Number(reply[1]) >= 1) return performance.now();
  }
  return Infinity;
}

const eventKey = (id: string, status: string, step: number | undefined) => `${id}|${status}|${step ?? '-'}`;

// ---------------------------------------------------------------------------------------------
// Mutation throughput with Postgres (and Redis) against bare yoga, beside the embedded server

async function throughputRows(o: ScaleOptions, settings: ThroughputSettings, log: (line: string) => void): Promise<ThroughputRows> {
  // The machine's CPU over each measured window: Postgres and Redis are not among the run's own processes.
  const machine = new Map<string, CpuFigures>();
  let label = '';
  let window: { end(): CpuFigures } | null = null;
  const s: ThroughputSettings = {
    ...settings,
    onWindow(edge) {
      if (edge === 'open') window = startCpuWindow([]);
      else if (window) machine.set(label, window.end());
    },
  };
  const at = (l: string) => ((label = l), l);
  const baselines = [await runBaseline(at('S1 baseline (yoga echo)'), s)];
  log(`  S1 baseline ${baselines[0]!.rps.toFixed(0)} req/s`);
  const embedded = await runOurs(at('S2 ours, embedded SQLite (FULL)'), s);
  log(`  S2 embedded ${embedded.rps.toFixed(0)} req/s`);
  const pg = await createSchema(o.databaseUrl, 'tp');
  const forgetPg = atInterrupt(() => pg.drop());
  let postgres: RunResult;
  try {
    postgres = await runOurs(at('S3 ours, Postgres'), s, { DATABASE_URL: pg.url });
  } finally {
    await pg.drop();
    forgetPg();
  }
  log(`  S3 Postgres ${postgres.rps.toFixed(0)} req/s`);
  const pgq = await createSchema(o.databaseUrl, 'tpq');
  const prefix = newPrefix('tp');
  const forgetPgq = atInterrupt(() => Promise.all([pgq.drop(), removePrefix(o.redisUrl, prefix)]));
  let queue: RunResult;
  try {
    queue = await runOurs(at('S4 ours, Postgres + Redis queue'), s, { DATABASE_URL: pgq.url, REDIS_URL: o.redisUrl, REDIS_PREFIX: prefix });
  } finally {
    await pgq.drop();
    await removePrefix(o.redisUrl, prefix);
    forgetPgq();
  }
  log(`  S4 Postgres + Redis ${queue.rps.toFixed(0)} req/s`);
  baselines.push(await runBaseline(at('S5 baseline (yoga echo)'), s));
  return { baselines, embedded, postgres, queue, machine };
}

// ---------------------------------------------------------------------------------------------
// GraphQL over HTTP

async function gql<T>(ctx: Ctx, doc: DocumentNode, variables: Record<string, unknown>): Promise<T> {
  const res = await ctx.pool.request({
    path: '/graphql',
    method: 'POST',
    headers: { 'content-type': 'application/json', 'API-Key': ctx.key },
    body: JSON.stringify({ query: print(doc), variables }),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
  const r = JSON.parse(text) as { data?: T; errors?: unknown };
  if (r.errors || !r.data) throw new Error(`errors: ${JSON.stringify(r.errors).slice(0, 300)}`);
  return r.data;
}

async function create(ctx: Ctx, size: number, steps: number): Promise<{ id: string; createdAt: string }> {
  const data = await gql<{ text2image: { id: string; status: string; createdAt: string } }>(ctx, CreateText2ImageDocument, {
    input: { prompt: 'a lighthouse on a cliff at dusk', width: size, height: size, numInferenceSteps: steps, safetyChecker: false },
  });
  if (data.text2image.status !== 'PENDING') throw new Error(`a new job is ${data.text2image.status}`);
  return data.text2image;
}

const summary = async (ctx: Ctx, id: string) => (await gql<JobSummaryQuery>(ctx, JobSummaryDocument, { id })).job;

// ---------------------------------------------------------------------------------------------

/** A connection of the bench's own; an outage shows as the step that needed it failing. */
function redisClient(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  return redis;
}

/** The job of a job event as published on Redis ({"o": origin, "j": job}); null if it is not one. */
function envelopeJob(message: string): { id: string; status: string; progress: { step: number } | null } | null {
  try {
    const j = (JSON.parse(message) as { j?: { id?: unknown; status?: unknown; progress?: { step: number } | null } }).j;
    return j && typeof j.id === 'string' && typeof j.status === 'string'
      ? { id: j.id, status: j.status, progress: j.progress ?? null }
      : null;
  } catch {
    return null;
  }
}

async function waitUntil<T>(test: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = test();
    if (v) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing in ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
