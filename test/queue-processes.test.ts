import { rmSync } from 'node:fs';
import { Queue } from 'bullmq';
import { WsClients } from './helpers/ws-clients.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { QUEUE_NAME } from '../src/queue/job-queue.js';
import { follow } from './helpers/follow.js';
import {
  killProcess,
  newDataDir,
  queueEnv,
  sharedPostgres,
  type SharedStore,
  REDIS_URL,
  removePrefix,
  startWorkerProcess,
  testPrefix,
  type WorkerProcess,
} from './helpers/queue.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { gql, waitFor } from './helpers/test-server.js';

/**
 * The processes as operators run them: npm start's src/main.ts as the API and npm run worker's
 * src/worker.ts as workers, on Postgres (a schema of this file's) and the real Redis. Workers are killed with SIGKILL
 * (nothing runs in them after) and stopped with SIGTERM.
 */
describe('API and worker processes: a worker killed or stopped mid-job', () => {
  const prefix = testPrefix('queue-processes');
  const dataDir = newDataDir();
  let shared: SharedStore;
  let env: Record<string, string>;
  const workers: WorkerProcess[] = [];
  const sockets = new WsClients();
  let api: ServerProcess;
  let url: string;
  let key: string;
  let bull: Queue;

  const ws = () => sockets.open(url, key);
  const worker = async (extra: Record<string, string> = {}) => {
    const w = startWorkerProcess({ ...env, ...extra });
    workers.push(w);
    await w.ready;
    return w;
  };
  /** About six seconds of generation on the tiny models. */
  const createLong = async () => {
    const res = await gql(
      url,
      Text2ImageDocument,
      { input: { prompt: 'a harbour', width: 512, height: 512, numInferenceSteps: 100, samples: 2, safetyChecker: false } },
      key,
    );
    expect(res.errors).toBeUndefined();
    return res.data!.text2image.id;
  };
  /** The worker whose log says it runs (or took over) the job. */
  const runnerOf = (id: string): Promise<WorkerProcess> =>
    waitFor<WorkerProcess>(
      async () =>
        workers.find((w) => w.logs().some((l) => l.jobId === id && (l.msg === 'running the job' || l.msg === 'taking the job over'))),
      30_000,
    );

  beforeAll(async () => {
    shared = await sharedPostgres('queue_processes');
    env = queueEnv(prefix, dataDir, shared, { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '300' });
    // The API first: it builds the tiny models in DATA_DIR, which the workers then find there.
    api = startServerProcess(env, 90_000);
    url = await api.url;
    key = api.printedKey()!;
    expect(key).toBeTruthy();
    await Promise.all([worker(), worker()]);
    bull = new Queue(QUEUE_NAME, { connection: { url: REDIS_URL }, prefix });
  }, 120_000);

  afterAll(async () => {
    await sockets.disposeAll();
    await bull?.close();
    for (const w of workers) await killProcess(w, 'SIGKILL');
    if (api) await killProcess(api, 'SIGTERM');
    await shared?.drop();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('SIGKILL mid-job: the other worker takes the job over (stalled check) and it finishes; never left PROCESSING', async () => {
    const id = await createLong();
    const sub = follow(ws(), id, 90_000);
    await sub.until((j) => j.status === 'PROCESSING' && j.progress.step >= 1, 30_000);
    const victim = await runnerOf(id);
    await killProcess(victim, 'SIGKILL');
    const survivor = workers.find((w) => w !== victim && w.child.exitCode === null && w.child.signalCode === null)!;

    const last = await sub.done;
    expect(last.status).toBe('SUCCESS');
    expect(last.downloadUrls).toHaveLength(2);
    for (const u of last.downloadUrls) expect((await fetch(u)).status).toBe(200);
    expect(survivor.logs().some((l) => l.jobId === id && l.msg === 'taking the job over')).toBe(true);
    const entry = (await bull.getJob(id))!;
    expect(entry.stalledCounter).toBe(1);
    expect(entry.attemptsStarted).toBe(2);
    // The subscriber saw it through: PROCESSING, then (after the takeover) PROCESSING again, then SUCCESS.
    const statuses = sub.values.map((v) => v.job.status);
    expect(statuses).not.toContain('FAILURE');
  }, 120_000);

  it('SIGTERM mid-job: the worker hands the job back within its grace period and exits; another worker finishes it at once, without a stall', async () => {
    await worker(); // two alive again
    const id = await createLong();
    const sub = follow(ws(), id, 90_000);
    await sub.until((j) => j.status === 'PROCESSING' && j.progress.step >= 1, 30_000);
    const stopping = await runnerOf(id);
    const t0 = Date.now();
    stopping.child.kill('SIGTERM');
    const exit = await stopping.exited;
    const stopMs = Date.now() - t0;
    if (exit.code !== 0) console.log(exit, stopping.output().slice(-3000));
    expect(exit.code).toBe(0);
    expect(stopMs).toBeLessThan(10_000);
    expect(stopping.logs().some((l) => l.jobId === id && l.msg === 'handed back to the queue')).toBe(true);

    const last = await sub.done;
    expect(last.status).toBe('SUCCESS');
    const entry = (await bull.getJob(id))!;
    expect(entry.stalledCounter).toBe(0);
    expect(entry.attemptsStarted).toBe(2);
    // At once: the idle worker takes it up within about a second of the hand-back (BullMQ wakes
    // no idle worker for a prioritized job moved back to wait; they look again every drainDelay).
    const at = (l: Record<string, unknown> | undefined) => Date.parse(String(l?.time));
    const handedAt = at(stopping.logs().find((l) => l.jobId === id && l.msg === 'handed back to the queue'));
    const takenAt = at(workers.flatMap((w) => w.logs()).find((l) => l.jobId === id && l.msg === 'taking the job over'));
    console.log(`hand-back: taken up ${takenAt - handedAt} ms after it was handed back`);
    expect(takenAt - handedAt).toBeLessThan(2_500);
  }, 120_000);

  it('killed more often than allowed: the queue gives the job up and it ends FAILURE with the reason', async () => {
    for (const w of workers) await killProcess(w, 'SIGKILL');
    // Workers that allow no loss at all: the first takeover fails the job.
    const strict = { WORKER_MAX_STALLED_COUNT: '0' };
    const first = await worker(strict);
    const id = await createLong();
    const sub = follow(ws(), id, 90_000);
    await sub.until((j) => j.status === 'PROCESSING' && j.progress.step >= 1, 30_000);
    expect(await runnerOf(id)).toBe(first);
    await killProcess(first, 'SIGKILL');
    await worker(strict);

    const last = await sub.done;
    expect(last.status).toBe('FAILURE');
    expect(last.error!.code).toBe('ENGINE_LOST_JOB');
    expect(last.error!.message).toMatch(/stalled more than allowable limit/);
    expect((await gql(url, JobDocument, { id }, key)).data!.job!.status).toBe('FAILURE');
    expect(await bull.getJobState(id)).toBe('failed');
  }, 120_000);
});
