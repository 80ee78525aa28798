import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CancelJobDocument,
  Image2ImageDocument,
  JobDocument,
  ModelsDocument,
  Text2ImageDocument,
  UploadEmbeddingDocument,
  WatchJobDocument,
} from '../src/client/generated/graphql.js';
import { createNoise } from '../src/diffusion/noise/index.js';
import { encodeSafetensors } from '../scripts/tiny-models/safetensors.js';
import { loadConfig } from '../src/config.js';
import type { Job } from '../src/jobs/job.js';
import { InProcessJobEvents } from '../src/jobs/job-events.js';
import { JobUpdater } from '../src/jobs/job-updater.js';
import { LocalImageStore } from '../src/images/image-store.js';
import { createLogger } from '../src/logger.js';
import { JobQueue, QUEUE_NAME } from '../src/queue/job-queue.js';
import { Reconciler } from '../src/queue/reconciler.js';
import { RedisBus } from '../src/queue/redis-bus.js';
import { RedisJobEvents } from '../src/queue/redis-job-events.js';
import type { WorkerApp } from '../src/worker-app.js';
import { FakeImagePipeline } from './fixtures/fake-imagepipeline.js';
import { freePort, sleep } from './helpers/crash-harness.js';
import { follow } from './helpers/follow.js';
import {
  haveRedisServer,
  newDataDir,
  PrivateRedis,
  queueEnv,
  sharedPostgres,
  sharedSqlite,
  type SharedStore,
  REDIS_URL,
  removePrefix,
  startWorker,
  testPrefix,
} from './helpers/queue.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

const t2i = (server: TestServer, input: Record<string, unknown> = {}) =>
  server.gql(Text2ImageDocument, {
    input: { prompt: 'a lighthouse', width: 64, height: 64, numInferenceSteps: 8, safetyChecker: false, ...input },
  });
/** A few seconds on the tiny models: long enough to act on while it runs. */
const LONG = { width: 512, height: 512, numInferenceSteps: 100, samples: 2 };

/** A job as the store would hold it right after a create, for jobs planted behind the API's back. */
function plantedJob(template: Job): Job {
  return {
    ...template,
    id: randomUUID(),
    status: 'PENDING',
    engineHandle: null,
    progress: null,
    images: [],
    error: null,
    version: 1,
    createdAt: new Date(),
    startedAt: null,
    finishedAt: null,
  };
}

describe('jobs on BullMQ workers (REDIS_URL): two API replicas and a worker in this process, one shared Postgres', () => {
  const prefix = testPrefix('queue');
  const dataDir = newDataDir();
  let shared: SharedStore;
  let env: Record<string, string>;
  let a: TestServer;
  let b: TestServer;
  let worker: WorkerApp;
  let bull: Queue;

  beforeAll(async () => {
    shared = await sharedPostgres('queue');
    // Init images from loopback may be fetched: a port nobody listens on makes a job fail by its own fault.
    env = queueEnv(prefix, dataDir, shared, { IMAGE_FETCH_ALLOW_HOSTS: '127.0.0.1', WEBHOOK_ALLOW_HOSTS: '127.0.0.1' });
    a = await startTestServer({ dataDir, env });
    b = await startTestServer({ dataDir, env });
    worker = await startWorker(env);
    bull = new Queue(QUEUE_NAME, { connection: { url: REDIS_URL }, prefix });
  }, 120_000);

  afterAll(async () => {
    await bull?.close();
    await worker?.stop();
    await b?.stop({ keepData: true });
    await a?.stop({ keepData: true });
    await shared?.drop();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a job created on replica A runs on the worker; its progress reaches subscribers on A and on B through Redis', async () => {
    const created = await t2i(a, { numInferenceSteps: 30, width: 256, height: 256 });
    expect(created.errors).toBeUndefined();
    const id = created.data!.text2image.id;
    expect(created.data!.text2image.status).toBe('PENDING');
    const onA = follow(a.ws(), id);
    const onB = follow(b.ws({ apiKey: a.key }), id);
    const [lastA, lastB] = await Promise.all([onA.done, onB.done]);
    for (const [last, f] of [
      [lastA, onA],
      [lastB, onB],
    ] as const) {
      expect(last.status).toBe('SUCCESS');
      const steps = f.values.filter((v) => v.job.status === 'PROCESSING').map((v) => v.job.progress.step);
      expect(steps.length).toBeGreaterThan(1);
      expect(steps).toEqual([...steps].sort((x, y) => x - y));
    }
    // Images are served by either replica.
    expect(lastB.downloadUrls).toHaveLength(1);
    for (const url of [...lastA.downloadUrls, ...lastB.downloadUrls]) expect((await fetch(url)).status).toBe(200);
    // It went through the queue, once.
    const entry = await bull.getJob(id);
    expect(await entry!.getState()).toBe('completed');
    expect(entry!.returnvalue).toEqual({ status: 'SUCCESS' });
    expect(entry!.attemptsStarted).toBe(1);
    // Ready: the database, the image store and Redis answer.
    const ready = await fetch(`${b.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      checks: { database: { status: 'ok' }, images: { status: 'ok' }, redis: { status: 'ok' } },
    });
    // Nothing left subscribed on either replica once the subscriptions ended.
    await waitFor(async () => (await a.metrics()).sd_job_subscriptions === 0 && (await b.metrics()).sd_job_subscriptions === 0);
  });

  it('an embedding uploaded through A is listed on B and used by a job created on B at once, run on the worker', async () => {
    const form = new FormData();
    const variables = { file: null, name: 'Shared style', triggerWord: 'sharedstyle' };
    form.set('operations', JSON.stringify({ query: print(UploadEmbeddingDocument), variables }));
    form.set('map', JSON.stringify({ 0: ['variables.file'] }));
    const bytes = encodeSafetensors({ '<s>': { shape: [2, 32], data: createNoise('torch', 5).randn(64) } });
    form.set('0', new Blob([Buffer.from(bytes)]), 'shared.safetensors');
    const res = await fetch(`${a.url}/graphql`, { method: 'POST', headers: { 'api-key': a.key }, body: form });
    const uploaded = (await res.json()) as { data?: { uploadEmbedding: { id: string } }; errors?: unknown };
    expect(uploaded.errors).toBeUndefined();
    const id = uploaded.data!.uploadEmbedding.id;
    // B hears of it from the shared DATA_DIR: no restart, and no wait for its periodic look.
    const created = await t2i(b, { seed: 3, prompt: 'a tree in sharedstyle', embeddings: [id] });
    expect(created.errors).toBeUndefined();
    const last = await follow(b.ws(), created.data!.text2image.id).done;
    expect(last.status).toBe('SUCCESS');
    const listed = await b.gql(ModelsDocument, { filter: { kind: 'EMBEDDING' } });
    expect(listed.data!.models.find((m) => m.id === id)).toMatchObject({ name: 'Shared style', triggerWords: ['sharedstyle'] });
    // The worker used it: the same seed without it gives another image.
    const plain = await follow(b.ws(), (await t2i(b, { seed: 3, prompt: 'a tree in sharedstyle' })).data!.text2image.id).done;
    expect(plain.status).toBe('SUCCESS');
    const png = async (url: string) => Buffer.from(await (await fetch(url)).arrayBuffer());
    expect((await png(last.downloadUrls[0]!)).equals(await png(plain.downloadUrls[0]!))).toBe(false);
  });

  it('the webhook of a job created on A and ended on the worker is delivered once, though both replicas hear the end', async () => {
    const calls: { body: string }[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        calls.push({ body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const webhookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const created = await t2i(a, { webhookUrl });
      expect(created.errors).toBeUndefined();
      const id = created.data!.text2image.id;
      expect((await follow(b.ws({ apiKey: a.key }), id).done).status).toBe('SUCCESS');
      await waitFor(() => calls.length > 0);
      await sleep(1_000); // a second delivery, from the other replica, would come by now
      expect(calls).toHaveLength(1);
      expect(JSON.parse(calls[0]!.body)).toMatchObject({ job: { id, status: 'SUCCESS' } });
    } finally {
      receiver.closeAllConnections();
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  });

  it('a subscriber on B that selects progress.preview gets live previews made on the worker', async () => {
    const id = (await t2i(a, LONG)).data!.text2image.id;
    const { values, errors } = await collect(b.ws({ apiKey: a.key }), WatchJobDocument, { id }, 60_000);
    expect(errors).toEqual([]);
    expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
    const previews = values.flatMap((v) => (v.jobStatus.progress.preview ? [v.jobStatus.progress.preview] : []));
    expect(previews.length).toBeGreaterThan(0);
    expect(previews[0]).toMatch(/^data:image\/jpeg;base64,/);
  });

  it('cancel: a PENDING job is removed from the queue and never starts; a running one stops between steps, ends CANCELED and is not retried', async () => {
    // One worker, one job at a time: the long one runs, the next waits.
    const running = (await t2i(a, LONG)).data!.text2image.id;
    const runningSub = follow(a.ws(), running);
    await runningSub.until((j) => j.status === 'PROCESSING' && j.progress.step >= 1, 30_000);

    const waiting = (await t2i(a)).data!.text2image.id;
    const waitingSub = follow(b.ws({ apiKey: a.key }), waiting);
    // Waiting with its priority (its key's second unfinished job): BullMQ's prioritized state.
    await waitFor(async () => (await bull.getJobState(waiting)) === 'prioritized');
    expect((await a.gql(JobDocument, { id: waiting })).data!.job!.queuePosition).toBe(0);
    // The queue's depth, as BullMQ counts it: the same on both replicas (the queue is shared).
    expect((await a.metrics()).sd_queue_depth).toBe(1);
    expect((await b.metrics()).sd_queue_depth).toBe(1);

    const canceledWaiting = await b.gql(CancelJobDocument, { id: waiting }, a.key);
    expect(canceledWaiting.errors).toBeUndefined();
    expect(canceledWaiting.data!.cancelJob.status).toBe('CANCELED');
    expect((await waitingSub.done).status).toBe('CANCELED');
    expect(await bull.getJobState(waiting)).toBe('unknown');
    expect((await b.metrics()).sd_queue_depth).toBe(0);

    // Canceled from the other replica than the one that created it.
    const canceledRunning = await b.gql(CancelJobDocument, { id: running }, a.key);
    expect(canceledRunning.data!.cancelJob.status).toBe('CANCELED');
    const last = await runningSub.done;
    expect(last.status).toBe('CANCELED');
    await waitFor(async () => (await bull.getJobState(running)) === 'failed');
    await waitFor(() => worker.worker.runningCount() === 0);
    const entry = (await bull.getJob(running))!;
    expect(entry.failedReason).toBe('canceled');
    await sleep(1_500);
    expect(await bull.getJobState(running)).toBe('failed');
    expect((await bull.getJob(running))!.attemptsStarted).toBe(1);
    // Stopped part-way: the store holds where it was, and nothing moved since.
    const stored = (await a.gql(JobDocument, { id: running })).data!.job!;
    expect(stored.status).toBe('CANCELED');
    expect(stored.progress.step).toBeLessThan(100);
    expect(stored.downloadUrls).toEqual([]);
    const after = (await a.gql(JobDocument, { id: waiting })).data!.job!;
    expect(after).toMatchObject({ status: 'CANCELED', startedAt: null });

    // The worker is free again: the next job runs.
    const next = (await t2i(a)).data!.text2image.id;
    expect((await follow(a.ws(), next).done).status).toBe('SUCCESS');
  });

  it('a job that fails by its own fault ends FAILURE once, and is not retried', async () => {
    const created = await a.gql(Image2ImageDocument, {
      input: {
        prompt: 'a bridge',
        initImage: 'http://127.0.0.1:9/none.png',
        width: 64,
        height: 64,
        numInferenceSteps: 4,
        safetyChecker: false,
      },
    });
    expect(created.errors).toBeUndefined();
    const id = created.data!.image2image.id;
    const last = await follow(a.ws(), id).done;
    expect(last.status).toBe('FAILURE');
    expect(last.error!.code).toBe('IMAGE_UNAVAILABLE');
    await waitFor(async () => (await bull.getJobState(id)) === 'failed');
    await sleep(1_500);
    const entry = (await bull.getJob(id))!;
    expect(await entry.getState()).toBe('failed');
    expect(entry.attemptsStarted).toBe(1);
    expect(entry.failedReason).toMatch(/^IMAGE_UNAVAILABLE: /);
  });

  it('the reconciler queues a PENDING job the queue lacks (a crash between the commit and the add), and it runs', async () => {
    const db = shared.open();
    try {
      const template = (await t2i(a)).data!.text2image.id;
      await follow(a.ws(), template).done;
      const job = plantedJob((await db.store.get(template))!);
      await db.store.insert(job);
      expect(await bull.getJobState(job.id)).toBe('unknown');
      const last = await follow(a.ws(), job.id).done;
      expect(last.status).toBe('SUCCESS');
      expect(last.downloadUrls).toHaveLength(1);
      expect((await bull.getJob(job.id))!.attemptsStarted).toBe(1);
    } finally {
      await db.close();
    }
  });

  it('two workers share the queue; each job runs once', async () => {
    const second = await startWorker(env);
    try {
      const ids = await Promise.all(Array.from({ length: 6 }, () => t2i(a).then((r) => r.data!.text2image.id)));
      const ends = await Promise.all(ids.map((id) => follow(a.ws(), id).done));
      expect(ends.map((j) => j.status)).toEqual(ids.map(() => 'SUCCESS'));
      const entries = await Promise.all(ids.map((id) => bull.getJob(id)));
      expect(entries.map((e) => e!.attemptsStarted)).toEqual(ids.map(() => 1));
    } finally {
      await second.stop();
    }
  });
});

// REDIS_URL with SQLite: the API and the worker on one machine, sharing DATA_DIR's file.
describe('ENGINE=imagepipeline behind the queue, on the shared SQLite file: the worker is where the poller runs', () => {
  const prefix = testPrefix('queue-remote');
  const dataDir = newDataDir();
  const upstream = new FakeImagePipeline();
  let server: TestServer;
  let worker: WorkerApp;

  beforeAll(async () => {
    await upstream.start();
    const env = queueEnv(prefix, dataDir, sharedSqlite(dataDir), {
      ENGINE: 'imagepipeline',
      IMAGEPIPELINE_URL: upstream.url,
      IMAGEPIPELINE_API_KEY: upstream.apiKey,
      POLL_MIN_INTERVAL_MS: '10',
      POLL_MAX_INTERVAL_MS: '50',
    });
    server = await startTestServer({ upstream, dataDir, env });
    worker = await startWorker(env);
  }, 60_000);
  afterAll(async () => {
    await worker?.stop();
    await server?.stop({ keepData: true });
    await upstream.stop();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a job created on the API is submitted upstream once, by the worker, and followed to SUCCESS', async () => {
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a canal', numInferenceSteps: 20 } });
    const id = created.data!.text2image.id;
    const f = follow(server.ws(), id);
    const last = await f.done;
    expect(last.status).toBe('SUCCESS');
    expect(f.values.filter((v) => v.job.status === 'PROCESSING').length).toBeGreaterThan(0);
    expect(upstream.submits).toBe(1);
    expect((await fetch(last.downloadUrls[0]!)).status).toBe(200);
  });
});

describe('the queue on its own', () => {
  const prefix = testPrefix('queue-unit');
  const dataDir = newDataDir();
  const logger = createLogger('silent');
  let bus: RedisBus;
  let queue: JobQueue;

  beforeAll(() => {
    const config = loadConfig(queueEnv(prefix, dataDir, sharedSqlite(dataDir))).queue!;
    bus = new RedisBus(REDIS_URL, prefix, logger);
    queue = new JobQueue(config, bus.commands, logger);
  });
  afterAll(async () => {
    await queue.close();
    await bus.close();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('job events cross Redis from one process to another within milliseconds (median under 20 ms on loopback)', async () => {
    const other = new RedisBus(REDIS_URL, prefix, logger);
    try {
      const job = { id: randomUUID(), status: 'PROCESSING', version: 1, createdAt: new Date() } as Job;
      const publisher = new RedisJobEvents(bus, async () => null, logger);
      const subscriber = new RedisJobEvents(other, async () => null, logger);
      const latencies: number[] = [];
      let sentAt = 0;
      let received: (() => void) | null = null;
      const unsubscribe = subscriber.subscribe(job.id, () => {
        latencies.push(performance.now() - sentAt);
        received?.();
      });
      await waitFor(async () => (await bus.commands.pubsub('NUMSUB', other.channel(`job:${job.id}`)))[1] === 1);
      for (let v = 1; v <= 200; v++) {
        const arrived = new Promise<void>((resolve) => (received = resolve));
        sentAt = performance.now();
        publisher.publish({ ...job, version: v, progress: { step: v, totalSteps: 200 } });
        await arrived;
      }
      unsubscribe();
      expect(subscriber.listenerCount()).toBe(0);
      const sorted = [...latencies].sort((x, y) => x - y);
      const p50 = sorted[Math.floor(sorted.length / 2)]!;
      const p99 = sorted[Math.floor(sorted.length * 0.99)]!;
      console.log(`job event across Redis: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (${sorted.length} events)`);
      expect(p50).toBeLessThan(20);
    } finally {
      await other.close();
    }
  });

  it('an API process starts, answers creates and stops while its Redis is unreachable', async () => {
    const down = `redis://127.0.0.1:${await freePort()}`;
    const dir = newDataDir();
    const t0 = Date.now();
    const server = await startTestServer({ dataDir: dir, env: { REDIS_URL: down, REDIS_PREFIX: prefix, LOG_LEVEL: 'silent' } });
    try {
      expect(Date.now() - t0).toBeLessThan(10_000);
      const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a mill' } });
      expect(created.errors).toBeUndefined();
      expect(created.data!.text2image).toMatchObject({ status: 'PENDING', queuePosition: null });
      // Not ready while its Redis does not answer (a load balancer sends it nothing), and no stale depth.
      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: 'unavailable', failing: ['redis'], checks: { redis: { status: 'failed' } } });
      expect(Number.isNaN((await server.metrics()).sd_queue_depth)).toBe(true);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('adding a job twice queues it once; the reconciler re-adds only what the queue lacks, and only once', async () => {
    // A store of its own, with no worker on this prefix: entries stay where they are put.
    const server = await startTestServer({ dataDir, env: { ENGINE: 'local', LOG_LEVEL: 'silent' } });
    // This server's own SQLite file, read behind its back.
    const shared = sharedSqlite(dataDir).open();
    try {
      const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a kite', width: 64, height: 64, numInferenceSteps: 2 } });
      await follow(server.ws(), created.data!.text2image.id).done;
      await server.stop({ keepData: true });
      const template = (await shared.store.get(created.data!.text2image.id))!;
      const [j1, j2] = [plantedJob(template), plantedJob(template)];
      await shared.store.insert(j1);
      await shared.store.insert(j2);

      await queue.add(j1, 1);
      await queue.add(j1, 1);
      expect(await queue.waitingCount()).toBe(1);
      expect(await queue.position(j1.id)).toBe(0);

      const updater = new JobUpdater({
        store: shared.store,
        events: new InProcessJobEvents(),
        images: new LocalImageStore({ dir: path.join(dataDir, 'images') }),
        logger,
      });
      const reconciler = new Reconciler({ store: shared.store, queue, updater, logger, intervalMs: 60_000 });
      expect(await reconciler.pass()).toEqual({ active: 2, requeued: 1, failed: 0 });
      expect(await reconciler.pass()).toEqual({ active: 2, requeued: 0, failed: 0 });
      expect(await queue.waitingCount()).toBe(2);
      // One owner: its jobs in their order (the reconciler gives j2 its rank, 2).
      expect(await queue.position(j1.id)).toBe(0);
      expect(await queue.position(j2.id)).toBe(1);
      await queue.add(j2, 2);
      expect(await queue.waitingCount()).toBe(2);
    } finally {
      await shared.close();
    }
  });
});

describe.skipIf(!haveRedisServer)('Redis restarted (empty) while jobs run and are created', () => {
  const prefix = testPrefix('queue-outage');
  const dataDir = newDataDir();
  let shared: SharedStore;
  let redis: PrivateRedis;
  let server: TestServer;
  let worker: WorkerApp;

  beforeAll(async () => {
    redis = await PrivateRedis.create();
    await redis.start();
    shared = await sharedPostgres('queue_outage');
    const env = queueEnv(prefix, dataDir, shared, {
      REDIS_URL: redis.url,
      WEBHOOK_ALLOW_HOSTS: '127.0.0.1',
      WEBHOOK_RETRY_BASE_MS: '40',
      MAX_ACTIVE_JOBS_PER_KEY: '2',
    });
    server = await startTestServer({ dataDir, env });
    worker = await startWorker(env);
  }, 120_000);
  afterAll(async () => {
    await redis?.start().catch(() => {});
    await worker?.stop();
    await server?.stop({ keepData: true });
    await redis?.stop();
    await shared?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a create while Redis is down is answered and committed, and queued once it is back; the running job ends too, and its subscriber sees it', async () => {
    const running = (await t2i(server, LONG)).data!.text2image.id;
    const runningSub = follow(server.ws(), running, 90_000);
    await runningSub.until((j) => j.status === 'PROCESSING' && j.progress.step >= 1, 30_000);

    await redis.stop();
    const t0 = Date.now();
    const created = await t2i(server);
    const answeredInMs = Date.now() - t0;
    expect(created.errors).toBeUndefined();
    expect(created.data!.text2image.status).toBe('PENDING');
    // The add waits at most ~2 s for Redis, then the create answers anyway.
    expect(answeredInMs).toBeLessThan(5_000);
    const id = created.data!.text2image.id;
    const sub = follow(server.ws(), id, 90_000);
    expect((await server.gql(JobDocument, { id })).data!.job!.status).toBe('PENDING');

    await sleep(1_000);
    // Back, but empty (no persistence): the queue is gone and the reconciler rebuilds it from the store.
    await redis.start();
    const [lastRunning, lastCreated] = await Promise.all([runningSub.done, sub.done]);
    expect(lastRunning.status).toBe('SUCCESS');
    expect(lastCreated.status).toBe('SUCCESS');
    expect(lastCreated.downloadUrls).toHaveLength(1);
    expect((await fetch(lastCreated.downloadUrls[0]!)).status).toBe(200);
  }, 120_000);

  it('a job that ends on the worker has its webhook delivered once, by the API', async () => {
    const calls: string[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        calls.push(body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const webhookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const created = await t2i(server, { webhookUrl });
      expect(created.errors).toBeUndefined();
      const id = created.data!.text2image.id;
      expect((await follow(server.ws(), id).done).status).toBe('SUCCESS');
      await waitFor(() => calls.length > 0);
      await sleep(500);
      expect(calls).toHaveLength(1);
      expect(JSON.parse(calls[0]!)).toMatchObject({ job: { id, status: 'SUCCESS' } });
    } finally {
      receiver.closeAllConnections();
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  });

  it('the cap on unfinished jobs per key (2 here) is released by ends on the worker', async () => {
    // Long enough that neither ends before the third create is checked, on a loaded machine too.
    const slow = { width: 256, height: 256, numInferenceSteps: 60 };
    for (let round = 0; round < 2; round++) {
      const created = await Promise.all([t2i(server, slow), t2i(server, slow)]);
      expect(created.map((r) => r.errors)).toEqual([undefined, undefined]);
      const refused = await t2i(server);
      expect(refused.errors![0]!.extensions!.code).toBe('RATE_LIMITED');
      const ends = await Promise.all(created.map((r) => follow(server.ws(), r.data!.text2image.id).done));
      expect(ends.map((j) => j.status)).toEqual(['SUCCESS', 'SUCCESS']);
      // The API hears of the ends through Redis (or, at the latest, its next reconciling pass).
      await sleep(700);
    }
  });
});
