import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { print } from 'graphql';
import { Queue } from 'bullmq';
import { WsClients } from './helpers/ws-clients.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { QUEUE_NAME } from '../src/queue/job-queue.js';
import { TcpProxy } from './fixtures/tcp-proxy.js';
import { nextFileEvent } from './helpers/crash-harness.js';
import { follow, type Following } from './helpers/follow.js';
import { createTestSchema, POSTGRES_URL, urlWithSchema, type TestSchema } from './helpers/postgres.js';
import {
  killProcess,
  newDataDir,
  queueEnv,
  REDIS_URL,
  removePrefix,
  sharedPostgres,
  startWorkerProcess,
  testPrefix,
  type SharedStore,
  type WorkerProcess,
} from './helpers/queue.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { gql } from './helpers/test-server.js';

/**
 * Failures of whole processes and of the database, as operators run it: API replicas (npm
 * start's src/main.ts) and workers (npm run worker's src/worker.ts) as processes, on Postgres (a
 * schema of this file's) and the real Redis (a prefix of this file's), the local engine on the
 * tiny models. An API replica SIGKILLed mid-job: its clients reconnect to the other replica and
 * see every job through. PostgreSQL unreachable for a while (the tcp-proxy fixture between every
 * process and the database, cut and restored): creates answer STORAGE_UNAVAILABLE, nothing is
 * half-written (no record, no queue entry, no image nobody knows of), every accepted job ends,
 * and no process needs a restart; a worker stopped then hands its job back, and the worker that
 * takes it up meanwhile gives it up after its attempts, as the queue's rules say.
 */

/** One to two seconds of generation on the tiny models on an idle machine (more when loaded): long enough to be caught mid-run. */
const JOB = { width: 512, height: 512, numInferenceSteps: 100, safetyChecker: false };
const TERMINAL = ['SUCCESS', 'FAILURE', 'CANCELED'];

const alive = (p: { child: { exitCode: number | null; signalCode: NodeJS.Signals | null } }) =>
  p.child.exitCode === null && p.child.signalCode === null;

/** Polls a condition every intervalMs until it holds (gentler on a loaded machine than waitFor's 10 ms). */
async function until<T>(check: () => Promise<T | null | undefined | false>, timeoutMs: number, what: string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The statuses a subscriber saw, with repeats collapsed: PENDING, PROCESSING, SUCCESS at most. */
const transitions = (sub: Following) => sub.values.map((v) => v.job.status).filter((s, i, all) => i === 0 || all[i - 1] !== s);

/** A job's statuses never go backwards, nor past a terminal one. */
function expectForward(statuses: string[]): void {
  const order = ['PENDING', 'PROCESSING', 'SUCCESS'];
  const ranks = statuses.map((s) => order.indexOf(s));
  expect(ranks).not.toContain(-1);
  expect(ranks).toEqual([...ranks].sort((x, y) => x - y));
}

describe('two API processes and two workers: API replica A SIGKILLed while its clients follow jobs', () => {
  const prefix = testPrefix('failover-replicas');
  const dataDir = newDataDir();
  const sockets = new WsClients();
  const workers: WorkerProcess[] = [];
  let shared: SharedStore;
  let a: ServerProcess;
  let b: ServerProcess;
  let urlA: string;
  let urlB: string;
  let key: string;
  let bull: Queue;
  let direct: pg.Pool;

  const ws = (url: string) => sockets.open(url, key);
  const create = async (url: string, prompt: string) => {
    const res = await gql(url, Text2ImageDocument, { input: { prompt, ...JOB } }, key);
    expect(res.errors).toBeUndefined();
    expect(res.data!.text2image.status).toBe('PENDING');
    return res.data!.text2image.id;
  };

  beforeAll(async () => {
    shared = await sharedPostgres('failover_replicas');
    direct = new pg.Pool({ connectionString: shared.env.DATABASE_URL, max: 2 });
    const env = queueEnv(prefix, dataDir, shared, { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '300' });
    // A first: it builds the tiny models in DATA_DIR (which the others then find there), applies
    // the migrations, and prints the first key, which every process shares through Postgres.
    a = startServerProcess(env, 120_000);
    urlA = await a.url;
    key = a.printedKey()!;
    expect(key).toBeTruthy();
    b = startServerProcess(env, 90_000);
    for (let i = 0; i < 2; i++) workers.push(startWorkerProcess(env, 90_000));
    [urlB] = await Promise.all([b.url, ...workers.map((w) => w.ready)]);
    bull = new Queue(QUEUE_NAME, { connection: { url: REDIS_URL }, prefix });
  }, 240_000);

  afterAll(async () => {
    await sockets.disposeAll();
    await bull?.close();
    for (const w of workers) await killProcess(w, 'SIGTERM');
    for (const p of [a, b]) if (p) await killProcess(p, 'SIGTERM');
    await direct?.end();
    await shared?.drop();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('no accepted job is lost: the clients reconnect to B with the same job ids and see every job through to SUCCESS, images served by B', async () => {
    // Four clients, each creating a job on A and following it there (two run, two wait).
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await create(urlA, `a lighthouse, ${i}`));
    const onA = ids.map((id) => follow(ws(urlA), id, 120_000));
    await onA[0]!.until((j) => j.status === 'PROCESSING' && j.progress.step >= 1, 60_000);
    // A fifth client's create is answered by A just before A dies: it must not be lost either.
    ids.push(await create(urlA, 'created just before the kill'));
    await killProcess(a, 'SIGKILL');

    // A's subscriptions are cut with it; the first job was mid-run then, and ended nowhere yet.
    const cut = await Promise.allSettled(onA.map((s) => s.done));
    const seenOnA = onA.map((s) => s.values.at(-1)?.job);
    expect(seenOnA[0]!.status).toBe('PROCESSING');
    for (const [i, outcome] of cut.entries()) {
      if (outcome.status === 'fulfilled')
        expect(outcome.value.status).toBe('SUCCESS'); // it ended before the kill
      else expect(TERMINAL).not.toContain(seenOnA[i]?.status);
    }
    expect(alive(b)).toBe(true);

    // Behind the load balancer: a new WebSocket, to B, with the same key and job ids. Jobs 1–4
    // are followed again at once; job 0's client stays away until its job has ended.
    const onB = ids.slice(1).map((id) => follow(ws(urlB), id, 120_000));
    const ends = await Promise.all(onB.map((s) => s.done));
    for (const [i, sub] of onB.entries()) {
      expect(ends[i]!.status).toBe('SUCCESS');
      // The first value is the store's snapshot as of the reconnection; then forward only.
      expect(sub.values[0]!.job.id).toBe(ids[i + 1]);
      expectForward(transitions(sub));
    }

    // Job 0 ended while its client was away: a subscription on B started now gets the end as its
    // snapshot, at once, and completes.
    const ended = await until(
      async () => {
        const job = (await gql(urlB, JobDocument, { id: ids[0]! }, key)).data?.job;
        return job && TERMINAL.includes(job.status) ? job : null;
      },
      120_000,
      'job 0 ending',
      200,
    );
    expect(ended.status).toBe('SUCCESS');
    const late = follow(ws(urlB), ids[0]!, 30_000);
    const lateEnd = await late.done;
    expect(late.values.map((v) => v.job.status)).toEqual(['SUCCESS']);
    ends.unshift(lateEnd);

    // Every job's images come from B (the replica the client is on), and are there.
    for (const end of ends) {
      expect(end.downloadUrls).toHaveLength(1);
      expect(end.downloadUrls[0]!.startsWith(`${urlB}/images/`)).toBe(true);
      const image = await fetch(end.downloadUrls[0]!);
      expect(image.status).toBe(200);
      expect(image.headers.get('content-type')).toBe('image/png');
      expect(
        Buffer.from(await image.arrayBuffer())
          .subarray(1, 4)
          .toString('ascii'),
      ).toBe('PNG');
    }

    // None lost, none left PENDING or PROCESSING: the store has exactly the five, all SUCCESS,
    // and the queue ran each of them once (the replica's death cost no worker its job).
    const { rows } = await direct.query<{ id: string; status: string }>('SELECT id, status FROM jobs');
    expect(rows.map((r) => r.id).sort()).toEqual([...ids].sort());
    expect(rows.every((r) => r.status === 'SUCCESS')).toBe(true);
    for (const id of ids) {
      const entry = (await bull.getJob(id))!;
      expect([await entry.getState(), entry.attemptsStarted]).toEqual(['completed', 1]);
    }
    expect(workers.every(alive)).toBe(true);
    expect(alive(b)).toBe(true);
  }, 240_000);
});

// ---------------------------------------------------------------------------------------------

/** The test database through the proxy, in the given schema: what every process is given. */
function proxiedUrl(proxy: TcpProxy, schema: string): string {
  const url = new URL(urlWithSchema(schema));
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  return url.toString();
}

/** How long PostgreSQL stays unreachable: many poll (20 ms), reconcile (500 ms), store-check (1 s) and lock (2 s) intervals. */
const OUTAGE_MS = 6_000;

describe('PostgreSQL unreachable for a while, between every process and the database', () => {
  const prefix = testPrefix('failover-pg');
  const dataDir = newDataDir();
  const imagesDir = path.join(dataDir, 'images');
  const sockets = new WsClients();
  const workers: WorkerProcess[] = [];
  let schema: TestSchema;
  let proxy: TcpProxy;
  let api: ServerProcess;
  let url: string;
  let key: string;
  let bull: Queue;
  let direct: pg.Pool;
  let env: Record<string, string>;

  const ws = () => sockets.open(url, key);
  const jobCount = async () => Number((await direct.query<{ n: string }>('SELECT COUNT(*) AS n FROM jobs')).rows[0]!.n);
  /** Every entry of this file's queue, whatever its state. */
  const queued = async () => (await bull.getJobs(['waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed'])).map((e) => e.id!);

  beforeAll(async () => {
    schema = await createTestSchema('failover_pg');
    const target = new URL(POSTGRES_URL);
    proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    await proxy.open();
    direct = new pg.Pool({ connectionString: schema.url, max: 2 });
    const shared: SharedStore = {
      kind: 'postgres',
      env: { DATABASE_URL: proxiedUrl(proxy, schema.name) },
      open: () => {
        throw new Error('not used');
      },
      drop: () => schema.drop(),
    };
    env = queueEnv(prefix, dataDir, shared, { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '300' });
    api = startServerProcess(env, 120_000);
    url = await api.url;
    key = api.printedKey()!;
    expect(key).toBeTruthy();
    for (let i = 0; i < 2; i++) workers.push(startWorkerProcess(env, 90_000));
    await Promise.all(workers.map((w) => w.ready));
    bull = new Queue(QUEUE_NAME, { connection: { url: REDIS_URL }, prefix });
  }, 240_000);

  afterAll(async () => {
    await sockets.disposeAll();
    await bull?.close();
    await proxy?.open(); // so the processes stop cleanly whatever the test left
    for (const w of workers) await killProcess(w, 'SIGTERM');
    if (api) await killProcess(api, 'SIGTERM');
    await proxy?.close();
    await direct?.end();
    await schema?.drop();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  it('creates answer STORAGE_UNAVAILABLE (503, Retry-After) and write nothing; once it is back every accepted job ends (those running SUCCESS), none left PENDING or PROCESSING, without a restart', async () => {
    const created = [];
    for (let i = 0; i < 4; i++) {
      const res = await gql(url, Text2ImageDocument, { input: { prompt: `a harbour, ${i}`, ...JOB } }, key);
      expect(res.errors).toBeUndefined();
      created.push(res.data!.text2image.id);
    }
    const ids = [...created];
    const subs = ids.map((id) => follow(ws(), id, 150_000));
    // Every subscription has its snapshot (they were set up while the database answered); two
    // jobs run (one per worker), two wait in the queue.
    await Promise.all(subs.map((s) => s.until(() => true, 60_000)));
    await Promise.all(subs.slice(0, 2).map((s) => s.until((j) => j.status === 'PROCESSING' && j.progress.step >= 1, 60_000)));

    await proxy.close();
    const cutAt = Date.now();
    // A worker writing a result image while the database is away: its engine finished a job
    // whose SUCCESS cannot be recorded yet (the outage lasts at least until then).
    const imageWritten = nextFileEvent(imagesDir, (n) => n.endsWith('.png'), 90_000);

    // A create over GraphQL: 503 with Retry-After, STORAGE_UNAVAILABLE.
    const graphql = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'api-key': key },
      body: JSON.stringify({ query: print(Text2ImageDocument), variables: { input: { prompt: 'during the outage', ...JOB } } }),
    });
    expect(graphql.status).toBe(503);
    expect(graphql.headers.get('retry-after')).toBe('5');
    const body = (await graphql.json()) as { data?: unknown; errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors[0]!.extensions.code).toBe('STORAGE_UNAVAILABLE');
    expect(body.data ?? null).toBeNull();
    // Over REST: the same.
    const rest = await fetch(`${url}/sd/text2image/v1`, {
      method: 'POST',
      headers: { 'api-key': key },
      body: JSON.stringify({ prompt: 'during the outage, over REST' }),
    });
    expect(rest.status).toBe(503);
    expect(rest.headers.get('retry-after')).toBe('5');
    expect(await rest.json()).toMatchObject({ status: 'FAILURE', code: 'STORAGE_UNAVAILABLE', retry_after: 5 });
    expect((await fetch(`${url}/readyz`)).status).toBe(503);

    // The outage lasts: every process keeps trying (polls, reconciling passes, lock renewals).
    expect(await imageWritten).not.toBeNull();
    await new Promise((r) => setTimeout(r, Math.max(0, cutAt + OUTAGE_MS - Date.now())));
    const outageMs = Date.now() - cutAt;
    // Nothing half-written: the database (seen directly) has the four jobs only, the queue the
    // four entries only, and every process is still up.
    expect(await jobCount()).toBe(4);
    expect((await queued()).sort()).toEqual([...ids].sort());
    expect(alive(api)).toBe(true);
    expect(workers.every(alive)).toBe(true);
    // Nothing reached a subscriber while the store could not be written (a change is stored
    // first, then published): a second's margin for what committed just before the cut.
    const atCut = subs.map((s) => s.values.filter((v) => v.at < cutAt).at(-1)!.job.status);
    expect(subs.flatMap((s) => s.values.filter((v) => v.at > cutAt + 1_000))).toEqual([]);
    expect(atCut.filter((st) => st === 'PROCESSING').length).toBeGreaterThan(0);

    await proxy.open();
    const restoredAt = Date.now();

    // Every accepted job ends, followed by the same subscriptions, without any process restarted.
    // One running at the cut ends SUCCESS: its result is recorded once the database is back. One
    // still waiting does too, also if a worker took it during the outage: unable to read it, the
    // worker put it back to wait.
    const ends = await Promise.all(subs.map((s) => s.done));
    for (const [i, end] of ends.entries()) {
      expect(end.status, `job ${i}: ${JSON.stringify(end)}`).toBe('SUCCESS');
      expect(end.downloadUrls).toHaveLength(1);
      expect((await fetch(end.downloadUrls[0]!)).status).toBe(200);
      expect(transitions(subs[i]!).at(-1)).toBe(end.status);
      expectForward(transitions(subs[i]!));
    }
    const recoveredMs = Date.now() - restoredAt;

    // Creates work again, and the new job runs through.
    const after = await until(
      async () => {
        const res = await gql(url, Text2ImageDocument, { input: { prompt: 'after the outage', ...JOB, numInferenceSteps: 4 } }, key);
        return res.errors ? null : res.data!.text2image;
      },
      30_000,
      'a create after the outage',
    );
    ids.push(after.id);
    const last = await follow(ws(), after.id, 60_000).done;
    expect(last.status).toBe('SUCCESS');
    await until(async () => (await fetch(`${url}/readyz`)).status === 200, 30_000, '/readyz after the outage');

    // The record: exactly the accepted jobs, each as its subscriber saw it end, none PENDING or
    // PROCESSING; the queue finished each entry accordingly.
    const { rows } = await direct.query<{ id: string; status: string; images: { name: string }[] }>('SELECT id, status, images FROM jobs');
    expect(rows.map((r) => r.id).sort()).toEqual([...ids].sort());
    const endOf = new Map([...ends, last].map((j) => [j.id, j.status]));
    for (const row of rows) expect(row.status).toBe(endOf.get(row.id));
    for (const id of ids) expect(await bull.getJobState(id)).toBe(endOf.get(id) === 'SUCCESS' ? 'completed' : 'failed');
    // Every image in the folder is a job's, or noted for the retention sweep: none left behind
    // unknown by the attempts to record a SUCCESS while the database was away.
    const referenced = new Set(rows.flatMap((r) => r.images.map((i) => i.name)));
    const noted = new Set((await direct.query<{ name: string }>('SELECT name FROM job_images')).rows.map((r) => r.name));
    const unknown = readdirSync(imagesDir).filter((n) => !n.endsWith('.tmp') && !referenced.has(n) && !noted.has(n));
    expect(unknown).toEqual([]);
    expect(alive(api)).toBe(true);
    expect(workers.every(alive)).toBe(true);
    console.log(
      `PostgreSQL away ${outageMs} ms; the four jobs ended ${recoveredMs} ms after it was back: ${ends.map((j) => j.status).join(', ')}`,
    );
  }, 240_000);

  it('a worker SIGTERMed while the database is away hands its job back and exits; another worker that cannot read it puts it back to wait (no attempt spent), and it runs to SUCCESS once the database is back', async () => {
    await proxy.open(); // whatever the test before left
    // A third worker, idle: the one that takes the handed-back job up during the outage.
    const spare = startWorkerProcess(env, 90_000);
    workers.push(spare);
    await spare.ready;
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await gql(url, Text2ImageDocument, { input: { prompt: `a quay, ${i}`, ...JOB, samples: 3 } }, key);
      expect(res.errors).toBeUndefined();
      ids.push(res.data!.text2image.id);
    }
    const subs = ids.map((id) => follow(ws(), id, 150_000));
    await Promise.all(subs.map((s) => s.until((j) => j.status === 'PROCESSING' && j.progress.step >= 1, 60_000)));
    // The job further from its end (a worker's first job waits for its models to load) is the one
    // handed back; its runner logged "running the job" before the job's first step.
    const fraction = (i: number) => subs[i]!.values.at(-1)!.job.progress.fraction;
    if (fraction(1) < fraction(0)) {
      ids.reverse();
      subs.reverse();
    }
    const stopping = workers.find((w) => alive(w) && w.logs().some((l) => l.jobId === ids[0] && l.msg === 'running the job'))!;
    expect(stopping).toBeDefined();
    const others = workers.filter((w) => w !== stopping && alive(w));

    await proxy.close();
    const cutAt = Date.now();
    stopping.child.kill('SIGTERM');
    const exit = await stopping.exited;
    expect(exit.code).toBe(0);
    expect(Date.now() - cutAt).toBeLessThan(15_000);
    expect(stopping.logs().some((l) => l.jobId === ids[0] && l.msg === 'handed back to the queue')).toBe(true);

    // Another worker takes it up and cannot read it: the entry goes back to wait, delayed, with no
    // attempt spent (the outage is the database's, not the job's), again and again while it lasts.
    await until(
      async () =>
        others.flatMap((w) => w.logs().filter((l) => l.jobId === ids[0] && l.msg === 'job store unreachable; the job waits in the queue'))
          .length >= 2,
      60_000,
      'the entry waiting for the store twice',
      200,
    );
    const waiting = (await bull.getJob(ids[0]!))!;
    expect(waiting.attemptsMade).toBe(0);
    expect(await waiting.getState()).not.toBe('failed');
    expect(subs.flatMap((s) => s.values.filter((v) => v.at > cutAt + 1_000))).toEqual([]);
    await new Promise((r) => setTimeout(r, Math.max(0, cutAt + OUTAGE_MS - Date.now())));

    await proxy.open();
    // Back: the handed-back job runs to its end on another worker, and so does the one that ran all along.
    const [given, ran] = await Promise.all(subs.map((s) => s.done));
    expect(given!.status).toBe('SUCCESS');
    expect(ran!.status).toBe('SUCCESS');
    expect(await bull.getJobState(ids[0]!)).toBe('completed');
    const { rows } = await direct.query<{ id: string; status: string }>('SELECT id, status FROM jobs WHERE id = ANY($1::text[])', [ids]);
    expect(Object.fromEntries(rows.map((r) => [r.id, r.status]))).toEqual({ [ids[0]!]: 'SUCCESS', [ids[1]!]: 'SUCCESS' });
    expect(
      Number((await direct.query<{ n: string }>("SELECT COUNT(*) AS n FROM jobs WHERE status IN ('PENDING', 'PROCESSING')")).rows[0]!.n),
    ).toBe(0);
    expect(alive(api)).toBe(true);
    expect(others.every(alive)).toBe(true);
  }, 240_000);
});
