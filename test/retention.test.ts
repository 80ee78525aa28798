import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { JobDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { SqliteKeyStore } from '../src/auth/key-store.js';
import { loadConfig, parseDuration } from '../src/config.js';
import { LocalImageStore } from '../src/images/image-store.js';
import { S3ImageStore } from '../src/images/s3-image-store.js';
import type { Job, JobStatus } from '../src/jobs/job.js';
import { InProcessJobEvents } from '../src/jobs/job-events.js';
import { SqliteJobStore } from '../src/jobs/job-store.js';
import { JobUpdater } from '../src/jobs/job-updater.js';
import { createLogger } from '../src/logger.js';
import { RetentionSweeper, type RetentionOptions } from '../src/retention/retention-sweeper.js';
import { SqliteRetentionStore } from '../src/retention/sqlite-retention-store.js';
import { InProcessLock } from '../src/retention/sweep-lock.js';
import { openDatabase, WalSync, type SqliteDatabase } from '../src/storage/sqlite.js';
import { WriteBatcher } from '../src/storage/write-batcher.js';
import { SqliteWebhookStore } from '../src/webhooks/webhook-store.js';
import { TestS3Server } from './fixtures/s3-server.js';
import { testJob } from './helpers/jobs.js';
import { parseMetrics, sampleValue } from './helpers/metrics.js';
import { collect, startTestServer, type TestServer } from './helpers/test-server.js';

const DAY = 86_400_000;
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

describe('JOB_RETENTION and RETENTION_SWEEP_INTERVAL', () => {
  it('parse durations with a unit, or bare seconds; 0 keeps everything', () => {
    expect(loadConfig({}).retention).toEqual({ maxAgeMs: 30 * DAY, sweepIntervalMs: 3_600_000 });
    expect(loadConfig({ JOB_RETENTION: '0' }).retention.maxAgeMs).toBe(0);
    expect(loadConfig({ JOB_RETENTION: '12h', RETENTION_SWEEP_INTERVAL: '90m' }).retention).toEqual({
      maxAgeMs: 12 * 3_600_000,
      sweepIntervalMs: 90 * 60_000,
    });
    expect(parseDuration('3600')).toBe(3_600_000);
    expect(parseDuration('2w')).toBe(14 * DAY);
    expect(parseDuration('500ms')).toBe(500);
    for (const bad of ['-1d', '1.5h', '30 days', 'd', '']) expect(parseDuration(bad)).toBeNull();
    expect(() => loadConfig({ JOB_RETENTION: 'a month' })).toThrow(/JOB_RETENTION: must be a duration/);
    expect(() => loadConfig({ RETENTION_SWEEP_INTERVAL: '10ms' })).toThrow(/RETENTION_SWEEP_INTERVAL: must be at least 1s/);
  });
});

describe('the retention sweep (SQLite store, local images, a clock of its own)', () => {
  let dir: string;
  let db: SqliteDatabase;
  let jobs: SqliteJobStore;
  let ledger: SqliteRetentionStore;
  let webhooks: SqliteWebhookStore;
  let images: LocalImageStore;
  let flaky: LocalImageStore;
  let puts = 0;
  let failAfter = Infinity;
  let ownerId: string;
  let now: number;
  const logger = createLogger('silent');

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sd-retention-'));
    const file = path.join(dir, 'sd-api.sqlite');
    db = openDatabase(file);
    const walSync = new WalSync(file, false);
    ownerId = (await new SqliteKeyStore(db, walSync).create('owner')).record.id;
    jobs = new SqliteJobStore(db, walSync);
    now = Date.parse('2030-06-01T00:00:00Z');
    ledger = new SqliteRetentionStore(db, walSync, () => now);
    webhooks = new SqliteWebhookStore(db, new WriteBatcher(db, walSync));
    images = new LocalImageStore({ dir: path.join(dir, 'images') });
    await images.init();
    // The same store, failing puts after the first failAfter of them, and deletes once a put failed
    // (so the updater's own best-effort cleanup fails too, and only the ledger remembers the image).
    flaky = Object.assign(Object.create(images) as LocalImageStore, {
      put: (data: Buffer, type: string) => (puts++ < failAfter ? images.put(data, type) : Promise.reject(new Error('disk full'))),
      delete: (name: string) => (puts > failAfter ? Promise.reject(new Error('disk gone')) : images.delete(name)),
    });
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const sweeper = (options: Partial<RetentionOptions> = {}, lock = new InProcessLock()) =>
    new RetentionSweeper(
      { store: ledger, images, lock, logger, clock: () => now },
      { maxAgeMs: 30 * DAY, sweepIntervalMs: 3_600_000, ...options },
    );

  /**
   * A job as the updater leaves it: images written and noted when the job is at `wroteAt`,
   * then (for a finished status) ended at `endedAt`, referencing them if SUCCESS. extraImages
   * are written and noted but never referenced (an attempt that crashed before committing).
   */
  async function makeJob(
    id: string,
    status: JobStatus,
    at: { wroteAt: number; endedAt?: number },
    opts: { samples?: number; extraImages?: number; webhook?: boolean } = {},
  ): Promise<{ job: Job; images: string[]; extra: string[] }> {
    await jobs.insert(
      testJob({ id, ownerId, createdAt: new Date(at.wroteAt), webhookUrl: opts.webhook ? 'https://example.test/hook' : null }),
    );
    const written: string[] = [];
    const extra: string[] = [];
    now = at.wroteAt;
    if (status !== 'PENDING' && status !== 'CANCELED') {
      for (let i = 0; i < (opts.samples ?? 1); i++) written.push((await images.put(PNG, 'image/png')).name);
    }
    for (let i = 0; i < (opts.extraImages ?? 0); i++) extra.push((await images.put(PNG, 'image/png')).name);
    await ledger.record(id, [...written, ...extra]);
    let job = (await jobs.get(id))!;
    if (status !== 'PENDING') {
      job = (await jobs.update(id, { status: 'PROCESSING', startedAt: new Date(at.wroteAt) }))!;
    }
    if (status === 'SUCCESS' || status === 'FAILURE' || status === 'CANCELED') {
      job = (await jobs.update(id, {
        status,
        finishedAt: new Date(at.endedAt ?? at.wroteAt),
        images: status === 'SUCCESS' ? written.map((name) => ({ name, contentType: 'image/png', nsfw: null })) : [],
        error: status === 'FAILURE' ? { code: 'ENGINE_FAILED', message: 'x' } : null,
      }))!;
      if (opts.webhook) {
        await webhooks.add({ id: `d-${id}`, jobId: id, ownerId, url: job.webhookUrl!, body: '{}', nextAttemptAt: 0 });
      }
    }
    return { job, images: written, extra };
  }

  const onDisk = (name: string) => existsSync(path.join(images.dir, name));
  const deliveries = () =>
    (db.prepare('SELECT job_id FROM webhook_deliveries ORDER BY job_id').all() as { job_id: string }[]).map((r) => r.job_id);
  const noted = () => (db.prepare('SELECT name FROM job_images ORDER BY name').all() as { name: string }[]).map((r) => r.name).sort();

  it('deletes finished jobs past retention with their images and deliveries; keeps recent and unfinished ones', async () => {
    const t0 = Date.parse('2030-01-01T00:00:00Z');
    const oldOk = await makeJob('old-success', 'SUCCESS', { wroteAt: t0 }, { samples: 2, webhook: true });
    const oldFailed = await makeJob('old-failure', 'FAILURE', { wroteAt: t0 + 1000 }, { webhook: true });
    const oldCanceled = await makeJob('old-canceled', 'CANCELED', { wroteAt: t0 + 2000 });
    // Created long ago but never finished: never deleted, whatever its age.
    const oldPending = await makeJob('old-pending', 'PENDING', { wroteAt: t0 });
    const oldRunning = await makeJob('old-running', 'PROCESSING', { wroteAt: t0 }, { samples: 1 });
    // Finished 29 days before the sweep: within retention.
    const sweepAt = t0 + 60 * DAY;
    const recent = await makeJob('recent-success', 'SUCCESS', { wroteAt: sweepAt - 29 * DAY }, { samples: 2, webhook: true });
    // Created 40 days ago, finished 10 days ago: age counts from the end.
    const lateEnd = await makeJob('late-end', 'SUCCESS', { wroteAt: sweepAt - 40 * DAY, endedAt: sweepAt - 10 * DAY });

    now = sweepAt;
    const report = await sweeper().sweep();
    expect(report).toMatchObject({ skipped: false, jobsDeleted: 3, imagesDeleted: 3, orphansDeleted: 0 });

    for (const gone of [oldOk, oldFailed, oldCanceled]) expect(await jobs.get(gone.job.id)).toBeNull();
    for (const kept of [oldPending, oldRunning, recent, lateEnd]) expect(await jobs.get(kept.job.id)).not.toBeNull();
    for (const name of oldOk.images) expect(onDisk(name)).toBe(false);
    for (const name of [...recent.images, ...lateEnd.images, ...oldRunning.images]) expect(onDisk(name)).toBe(true);
    // The failed job's image (written, never committed) went with it.
    for (const name of oldFailed.images) expect(onDisk(name)).toBe(false);
    expect(deliveries()).toEqual(['recent-success']);
    // Notes left: the unfinished job's image only (committed ones are settled, deleted ones forgotten).
    expect(noted()).toEqual([...oldRunning.images].sort());
  });

  it('removes images a job wrote but never committed, and never one a SUCCESS job references or an unfinished job may', async () => {
    const t0 = Date.parse('2030-05-01T00:00:00Z');
    const failed = await makeJob('failed', 'FAILURE', { wroteAt: t0 }, { samples: 2 });
    const canceled = await makeJob('canceled', 'CANCELED', { wroteAt: t0 }, { extraImages: 1 });
    const retried = await makeJob('retried', 'SUCCESS', { wroteAt: t0 }, { samples: 1, extraImages: 2 });
    const running = await makeJob('running', 'PROCESSING', { wroteAt: t0 }, { samples: 2 });
    // Written a minute before the sweep: within the grace period, left for the next one.
    const fresh = await makeJob('fresh-failure', 'FAILURE', { wroteAt: t0 + DAY - 60_000 }, { samples: 1 });

    now = t0 + DAY;
    const report = await sweeper({ orphanGraceMs: 10 * 60_000 }).sweep();
    expect(report).toMatchObject({ jobsDeleted: 0, orphansDeleted: 5 });
    for (const name of [...failed.images, ...canceled.extra, ...retried.extra]) expect(onDisk(name)).toBe(false);
    for (const name of [...retried.images, ...running.images, ...fresh.images]) expect(onDisk(name)).toBe(true);
    // The jobs themselves are within retention.
    for (const id of ['failed', 'canceled', 'retried', 'running', 'fresh-failure']) expect(await jobs.get(id)).not.toBeNull();
    expect(noted()).toEqual([...running.images, ...fresh.images].sort());

    now = t0 + DAY + 11 * 60_000;
    expect(await sweeper({ orphanGraceMs: 10 * 60_000 }).sweep()).toMatchObject({ orphansDeleted: 1 });
    expect(onDisk(fresh.images[0]!)).toBe(false);
    expect(onDisk(retried.images[0]!)).toBe(true);
  });

  it('the updater notes images before SUCCESS commits: those of a job that fails half-way are swept as orphans', async () => {
    const updater = new JobUpdater({
      store: jobs,
      events: new InProcessJobEvents(),
      images: flaky,
      logger,
      ledger,
      now: () => new Date(now),
    });
    now = Date.parse('2030-03-01T00:00:00Z');
    await jobs.insert(testJob({ id: 'half', ownerId, createdAt: new Date(now) }));
    let job = (await jobs.get('half'))!;
    const png = { data: PNG, contentType: 'image/png', nsfw: null };
    job = await updater.applyEngineStatus(job, { state: 'PROCESSING', step: 1, totalSteps: 2 });
    puts = 0;
    failAfter = 1;
    job = await updater.applyEngineStatus(job, { state: 'SUCCESS', images: [png, png] });
    expect(job.status).toBe('FAILURE');
    expect(job.error?.code).toBe('IMAGE_STORE_FAILED');
    const [written] = noted();
    expect(written).toBeDefined();
    // The updater's best-effort delete failed as well: the note is what lets the sweep find it.
    expect(onDisk(written!)).toBe(true);

    // A job that commits: its images are noted too, and the sweep only settles the notes.
    failAfter = Infinity;
    await jobs.insert(testJob({ id: 'whole', ownerId, createdAt: new Date(now) }));
    const whole = await updater.applyEngineStatus((await jobs.get('whole'))!, { state: 'SUCCESS', images: [png] });
    expect(whole.status).toBe('SUCCESS');
    expect(noted()).toHaveLength(2);

    now += DAY;
    expect(await sweeper().sweep()).toMatchObject({ orphansDeleted: 1, jobsDeleted: 0 });
    expect(onDisk(written!)).toBe(false);
    expect(onDisk(whole.images[0]!.name)).toBe(true);
    expect(noted()).toEqual([]);
  });

  it('JOB_RETENTION=0 keeps every job and its images (orphans still go)', async () => {
    const t0 = Date.parse('2020-01-01T00:00:00Z');
    const ancient = await makeJob('ancient', 'SUCCESS', { wroteAt: t0 }, { samples: 1, webhook: true });
    const failed = await makeJob('ancient-failure', 'FAILURE', { wroteAt: t0 }, { samples: 1 });
    now = t0 + 3650 * DAY;
    expect(await sweeper({ maxAgeMs: 0 }).sweep()).toMatchObject({ jobsDeleted: 0, imagesDeleted: 0, orphansDeleted: 1 });
    expect(await jobs.get('ancient')).not.toBeNull();
    expect(await jobs.get('ancient-failure')).not.toBeNull();
    expect(onDisk(ancient.images[0]!)).toBe(true);
    expect(onDisk(failed.images[0]!)).toBe(false);
    expect(deliveries()).toEqual(['ancient']);
  });

  it('works in batches, yielding to the event loop between them', async () => {
    const t0 = Date.parse('2030-01-01T00:00:00Z');
    for (let i = 0; i < 7; i++) await makeJob(`j${i}`, 'SUCCESS', { wroteAt: t0 + i }, { samples: 1 });
    now = t0 + 31 * DAY;
    const batches: number[] = [];
    const deleteJobs = ledger.deleteJobs.bind(ledger);
    ledger.deleteJobs = (ids, cutoff) => {
      batches.push(ids.length);
      return deleteJobs(ids, cutoff);
    };
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 0);
    const report = await sweeper({ batchSize: 2 }).sweep();
    clearInterval(ticker);
    expect(report.jobsDeleted).toBe(7);
    expect(batches).toEqual([2, 2, 2, 1]);
    expect(ticks).toBeGreaterThan(0);
    expect(db.prepare('SELECT COUNT(*) AS n FROM jobs').get()).toEqual({ n: 0 });
  });

  it('runs on one process at a time: a sweep finds the lock held and skips; the store refuses unfinished jobs', async () => {
    const t0 = Date.parse('2030-01-01T00:00:00Z');
    await makeJob('old', 'SUCCESS', { wroteAt: t0 });
    await makeJob('pending', 'PENDING', { wroteAt: t0 });
    now = t0 + 31 * DAY;
    const lock = new InProcessLock();
    const held = (await lock.tryAcquire('sd-retention-sweep'))!;
    expect(await sweeper({}, lock).sweep()).toMatchObject({ skipped: true, jobsDeleted: 0 });
    expect(await jobs.get('old')).not.toBeNull();
    await held.release();
    // Two sweeps started together in one process are one sweep.
    const s = sweeper({}, lock);
    const [a, b] = await Promise.all([s.sweep(), s.sweep()]);
    expect(a).toBe(b);
    expect(a.jobsDeleted).toBe(1);
    // Even asked directly, with a cutoff in the future, the store keeps an unfinished job.
    expect(await ledger.deleteJobs(['pending'], new Date(now + 365 * DAY))).toBe(0);
    expect(await jobs.get('pending')).not.toBeNull();
  });

  it('keeps a job whose images cannot be deleted, for the next sweep', async () => {
    const t0 = Date.parse('2030-01-01T00:00:00Z');
    const job = await makeJob('stuck', 'SUCCESS', { wroteAt: t0 }, { samples: 1 });
    now = t0 + 31 * DAY;
    const realDelete = images.delete.bind(images);
    images.delete = () => Promise.reject(Object.assign(new Error('the bucket said no'), { code: 'AccessDenied' }));
    expect(await sweeper().sweep()).toMatchObject({ jobsDeleted: 0 });
    expect(await jobs.get('stuck')).not.toBeNull();
    images.delete = realDelete;
    expect(await sweeper().sweep()).toMatchObject({ jobsDeleted: 1, imagesDeleted: 1 });
    expect(onDisk(job.images[0]!)).toBe(false);
  });

  it('sweeps on its own shortly after start, then every interval, and stops cleanly', async () => {
    const t0 = Date.parse('2030-01-01T00:00:00Z');
    await makeJob('old', 'SUCCESS', { wroteAt: t0 });
    now = t0 + 31 * DAY;
    const s = sweeper({ sweepIntervalMs: 40, firstSweepDelayMs: 10 });
    s.start();
    const until = Date.now() + 5_000;
    while ((await jobs.get('old')) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(await jobs.get('old')).toBeNull();
    await makeJob('old2', 'FAILURE', { wroteAt: t0 });
    now = t0 + 31 * DAY;
    while ((await jobs.get('old2')) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(await jobs.get('old2')).toBeNull();
    await s.stop();
  });
});

describe('retention in a running server (a clock moved on instead of waiting)', () => {
  let server: TestServer;
  let receiver: Server;
  let receiverUrl: string;
  let offset = 0;

  beforeAll(async () => {
    receiver = createServer((_req, res) => res.writeHead(200).end('ok'));
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    server = await startTestServer({
      env: { WEBHOOK_ALLOW_HOSTS: '127.0.0.1', JOB_RETENTION: '30d' },
      app: { clock: () => Date.now() + offset },
    });
  });
  afterAll(async () => {
    await server.stop();
    await new Promise((resolve) => receiver.close(resolve));
  });

  const finish = async (prompt: string, webhook = false) => {
    const created = await server.gql(Text2ImageDocument, { input: { prompt, ...(webhook ? { webhookUrl: receiverUrl } : {}) } });
    expect(created.errors).toBeUndefined();
    const { values } = await collect(server.ws(), JobStatusDocument, { id: created.data!.text2image.id });
    return values.at(-1)!.jobStatus;
  };

  it('deletes jobs that ended more than JOB_RETENTION ago, with their images and webhook deliveries', async () => {
    const old = await finish('old', true);
    expect(old.status).toBe('SUCCESS');
    const db = new Database(path.join(server.dataDir, 'sd-api.sqlite'), { readonly: true });
    try {
      const delivery = db.prepare('SELECT status FROM webhook_deliveries WHERE job_id = ?');
      for (let i = 0; i < 200 && (delivery.get(old.id) as { status: string } | undefined)?.status !== 'DELIVERED'; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(delivery.get(old.id)).toEqual({ status: 'DELIVERED' });

      // The updater noted the image before the job committed it.
      expect(db.prepare('SELECT COUNT(*) AS n FROM job_images WHERE job_id = ?').get(old.id)).toEqual({ n: 1 });
      offset = 31 * DAY;
      const recent = await finish('recent', true);
      server.upstream.behaviour.hold = true;
      const waiting = (await server.gql(Text2ImageDocument, { input: { prompt: 'waiting' } })).data!.text2image;

      const report = await server.app.retention.sweep();
      expect(report).toMatchObject({ skipped: false, jobsDeleted: 1, imagesDeleted: 1 });
      expect((await server.gql(JobDocument, { id: old.id })).data!.job).toBeNull();
      expect((await fetch(old.downloadUrls[0]!)).status).toBe(404);
      expect(delivery.get(old.id)).toBeUndefined();

      expect((await server.gql(JobDocument, { id: recent.id })).data!.job!.status).toBe('SUCCESS');
      expect((await fetch(recent.downloadUrls[0]!)).status).toBe(200);
      expect((await server.gql(JobDocument, { id: waiting.id })).data!.job!.status).toBe('PENDING');

      const metrics = parseMetrics(await (await fetch(`${server.url}/metrics`)).text());
      expect(sampleValue(metrics, 'sd_retention_jobs_deleted_total')).toBe(1);
      expect(sampleValue(metrics, 'sd_retention_images_deleted_total', { reason: 'expired' })).toBe(1);
      expect(sampleValue(metrics, 'sd_retention_last_sweep_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 + 30 * 86_400);
    } finally {
      db.close();
      server.upstream.behaviour.hold = false;
      server.upstream.release();
    }
  });
});

describe('retention with images in S3 (the s3rver test fixture)', () => {
  const s3 = new TestS3Server(['images']);
  let server: TestServer;
  let offset = 0;

  beforeAll(async () => {
    await s3.start();
    server = await startTestServer({
      env: { ...s3.env('s3://images/swept/'), JOB_RETENTION: '30d' },
      app: { clock: () => Date.now() + offset },
    });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await s3.destroy();
  });

  const objects = async (prefix: string) => {
    const client = s3.client();
    try {
      const out = await client.send(new ListObjectsV2Command({ Bucket: 'images', Prefix: prefix }));
      return (out.Contents ?? []).map((c) => c.Key!).sort();
    } finally {
      client.destroy();
    }
  };
  const finish = async (prompt: string) => {
    const created = await server.gql(Text2ImageDocument, { input: { prompt } });
    expect(created.errors).toBeUndefined();
    const { values } = await collect(server.ws(), JobStatusDocument, { id: created.data!.text2image.id });
    const job = values.at(-1)!.jobStatus;
    expect(job.status).toBe('SUCCESS');
    return { job, name: job.downloadUrls[0]!.split('/').pop()! };
  };

  it('deletes an expired job’s objects from the bucket, keeping a recent job’s', async () => {
    const old = await finish('old');
    expect(await objects('swept/')).toEqual([`swept/${old.name}`]);
    offset = 31 * DAY;
    const recent = await finish('recent');
    expect(await server.app.retention.sweep()).toMatchObject({ skipped: false, jobsDeleted: 1, imagesDeleted: 1 });
    expect(await objects('swept/')).toEqual([`swept/${recent.name}`]);
    expect((await fetch(old.job.downloadUrls[0]!)).status).toBe(404);
    expect((await fetch(recent.job.downloadUrls[0]!)).status).toBe(200);
  });

  it('removes objects written for a job that never committed them', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sd-retention-s3-'));
    const file = path.join(dir, 'sd-api.sqlite');
    const db = openDatabase(file);
    const walSync = new WalSync(file, false);
    const store = new S3ImageStore({
      bucket: 'images',
      prefix: 'orphans/',
      region: 'us-east-1',
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: TestS3Server.accessKeyId, secretAccessKey: TestS3Server.secretAccessKey },
    });
    try {
      let now = Date.parse('2030-01-01T00:00:00Z');
      const ownerId = (await new SqliteKeyStore(db, walSync).create('owner')).record.id;
      const jobs = new SqliteJobStore(db, walSync);
      const ledger = new SqliteRetentionStore(db, walSync, () => now);
      await jobs.insert(testJob({ id: 'failed', ownerId, createdAt: new Date(now) }));
      const written = await store.put(PNG, 'image/png');
      await ledger.record('failed', [written.name]);
      await jobs.update('failed', { status: 'FAILURE', finishedAt: new Date(now), error: { code: 'ENGINE_FAILED', message: 'x' } });
      expect(await objects('orphans/')).toEqual([`orphans/${written.name}`]);
      now += DAY;
      const sweeper = new RetentionSweeper(
        { store: ledger, images: store, lock: new InProcessLock(), logger: createLogger('silent'), clock: () => now },
        { maxAgeMs: 30 * DAY, sweepIntervalMs: 3_600_000 },
      );
      expect(await sweeper.sweep()).toMatchObject({ jobsDeleted: 0, orphansDeleted: 1 });
      expect(await objects('orphans/')).toEqual([]);
      expect(await jobs.get('failed')).not.toBeNull();
      await ledger.flush();
      await jobs.flush();
    } finally {
      store.close();
      db.close();
      walSync.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
