import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore, type KeyStore } from '../src/auth/key-store.js';
import { PgKeyStore } from '../src/auth/pg-key-store.js';
import type { Job } from '../src/jobs/job.js';
import { DuplicateIdempotencyKeyError, InvalidCursorError, SqliteJobStore, type JobStore } from '../src/jobs/job-store.js';
import { PgJobStore } from '../src/jobs/pg-job-store.js';
import { createPgPool, migratePostgres, type PgPool } from '../src/storage/postgres.js';
import { openDatabase, WalSync } from '../src/storage/sqlite.js';
import { WriteBatcher } from '../src/storage/write-batcher.js';
import { PgWebhookStore } from '../src/webhooks/pg-webhook-store.js';
import { SqliteWebhookStore, type WebhookStore } from '../src/webhooks/webhook-store.js';
import { LocalImageStore } from '../src/images/image-store.js';
import type { ImageLedger } from '../src/jobs/image-ledger.js';
import { createLogger } from '../src/logger.js';
import { PgRetentionStore } from '../src/retention/pg-retention-store.js';
import { PgSweepLock } from '../src/retention/pg-sweep-lock.js';
import type { NotedImage, NotedImageCursor, RetentionStore } from '../src/retention/retention-store.js';
import { RetentionSweeper } from '../src/retention/retention-sweeper.js';
import { SqliteRetentionStore } from '../src/retention/sqlite-retention-store.js';
import { InProcessLock, type SweepLock } from '../src/retention/sweep-lock.js';
import { testJob, testParams } from './helpers/jobs.js';
import { createTestSchema, runPostgresTests, type TestSchema } from './helpers/postgres.js';

/**
 * The stores' contract, run against each implementation: SQLite in a temporary DATA_DIR, and
 * PostgreSQL in a schema of this file's own. Whatever a caller can observe must be the same.
 */
interface Backend {
  jobs: JobStore;
  keys: KeyStore;
  webhooks: WebhookStore;
  /** The retention sweep's store and the image ledger; notes are stamped with clock.now. */
  retention: RetentionStore & ImageLedger;
  /** This process's sweep lock. */
  sweepLock: SweepLock;
  /** The lock as another process sharing the database has it (SQLite: one process owns the file, so this one's). */
  otherProcessLock(): Promise<SweepLock>;
  /** Rows of a table (webhook_deliveries or job_images) that belong to these jobs. */
  rowsOf(table: 'webhook_deliveries' | 'job_images', jobIds: readonly string[]): Promise<number>;
  close(): Promise<void>;
}

/** The time the retention stores stamp notes with; the retention tests set it. */
const clock = { now: 0 };

async function sqliteBackend(): Promise<Backend> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sd-store-contract-'));
  const file = path.join(dir, 'sd-api.sqlite');
  const db = openDatabase(file);
  const walSync = new WalSync(file, false);
  const jobs = new SqliteJobStore(db, walSync);
  const retention = new SqliteRetentionStore(db, walSync, () => clock.now);
  const sweepLock = new InProcessLock();
  return {
    jobs,
    keys: new SqliteKeyStore(db, walSync),
    webhooks: new SqliteWebhookStore(db, new WriteBatcher(db, walSync)),
    retention,
    sweepLock,
    otherProcessLock: async () => sweepLock,
    rowsOf: async (table, ids) =>
      (
        db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE job_id IN (SELECT value FROM json_each(?))`).get(JSON.stringify(ids)) as {
          n: number;
        }
      ).n,
    async close() {
      await Promise.all([jobs.flush(), retention.flush()]);
      walSync.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let schema: TestSchema | undefined;
const pools: PgPool[] = [];

async function postgresBackend(): Promise<Backend> {
  schema ??= await createTestSchema('store_contract');
  const pool = createPgPool(schema.url);
  pools.push(pool);
  await migratePostgres(pool);
  // One schema for the file: each backend starts from empty tables.
  await pool.query('TRUNCATE webhook_deliveries, job_images, jobs, api_keys');
  return {
    jobs: new PgJobStore(pool),
    keys: new PgKeyStore(pool),
    webhooks: new PgWebhookStore(pool, 60_000),
    retention: new PgRetentionStore(pool, () => clock.now),
    sweepLock: new PgSweepLock(pool),
    // Another process: a pool of its own, so a session (and its advisory locks) of its own.
    otherProcessLock: async () => {
      const otherPool = createPgPool(schema!.url);
      pools.push(otherPool);
      return new PgSweepLock(otherPool);
    },
    rowsOf: async (table, ids) =>
      Number((await pool.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${table} WHERE job_id = ANY($1::text[])`, [ids])).rows[0]!.n),
    close: async () => {},
  };
}

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await schema?.drop();
});

const backends: [string, () => Promise<Backend>, boolean][] = [
  ['SQLite', sqliteBackend, true],
  ['PostgreSQL', postgresBackend, runPostgresTests],
];

describe.each(backends)('%s stores', (_name, open, enabled) => {
  let b: Backend;
  let owner: string;
  let other: string;

  beforeAll(async () => {
    if (!enabled) return;
    b = await open();
    owner = (await b.keys.create('owner')).record.id;
    other = (await b.keys.create('other')).record.id;
  });
  afterAll(() => b?.close());

  let n = 0;
  const newJob = (over: Partial<Job> = {}): Job =>
    testJob({
      id: `job-${++n}-${Math.random().toString(36).slice(2)}`,
      ownerId: owner,
      createdAt: new Date(1_700_000_000_000 + n),
      ...over,
    });

  describe.runIf(enabled)('jobs', () => {
    it('gives back what was inserted, field for field', async () => {
      const job = newJob({
        params: testParams({ prompt: 'a lighthouse', embeddings: ['e1', 'e2'], initImage: 'https://example.com/i.png', strength: 0.5 }),
        mode: 'image2image',
        webhookUrl: 'https://example.com/hook',
        engineHandle: 'h-1',
      });
      await b.jobs.insert(job);
      expect(await b.jobs.get(job.id)).toEqual(job);
      expect(await b.jobs.get('no-such-job')).toBeNull();
      // Parameters keep their order as written (the stored JSON is the request's).
      expect(Object.keys((await b.jobs.get(job.id))!.params)).toEqual(Object.keys(job.params));
    });

    it('applies a patch, bumping the version each time, and leaves fields it does not name', async () => {
      const job = newJob();
      await b.jobs.insert(job);
      const started = new Date(1_700_000_100_123);
      const p1 = await b.jobs.update(job.id, {
        status: 'PROCESSING',
        startedAt: started,
        progress: { step: 3, totalSteps: 10 },
        engineQueuePosition: 2,
        engineHandle: 'handle-9',
        requeues: 1,
      });
      expect(p1).toEqual({
        ...job,
        status: 'PROCESSING',
        startedAt: started,
        progress: { step: 3, totalSteps: 10 },
        engineQueuePosition: 2,
        engineHandle: 'handle-9',
        requeues: 1,
        version: 2,
      });
      // undefined means "leave it"; null clears.
      const p2 = await b.jobs.update(job.id, { progress: null, engineQueuePosition: undefined });
      expect(p2).toMatchObject({ version: 3, progress: null, engineQueuePosition: 2, engineHandle: 'handle-9' });
      const p3 = await b.jobs.update(job.id, {});
      expect(p3!.version).toBe(4);
      expect(await b.jobs.get(job.id)).toEqual(p3);
      expect(await b.jobs.update('no-such-job', { status: 'PROCESSING' })).toBeNull();
    });

    it.each(['SUCCESS', 'FAILURE', 'CANCELED'] as const)('never changes a job once it is %s', async (status) => {
      const job = newJob();
      await b.jobs.insert(job);
      const finishedAt = new Date(1_700_000_200_000);
      const done = await b.jobs.update(job.id, {
        status,
        finishedAt,
        images: status === 'SUCCESS' ? [{ name: 'a.png', contentType: 'image/png', nsfw: false }] : [],
        error: status === 'FAILURE' ? { code: 'ENGINE_BAD_REPLY', message: 'no' } : null,
      });
      expect(done).toMatchObject({ status, finishedAt, version: 2 });
      expect(await b.jobs.update(job.id, { status: 'PROCESSING', progress: { step: 1, totalSteps: 2 } })).toBeNull();
      expect(await b.jobs.update(job.id, { status: 'CANCELED' })).toBeNull();
      expect(await b.jobs.get(job.id)).toEqual(done);
    });

    it('lets one of two racing terminal updates win, and counts every update that landed', async () => {
      const job = newJob();
      await b.jobs.insert(job);
      const [a, c] = await Promise.all([
        b.jobs.update(job.id, { status: 'CANCELED', finishedAt: new Date() }),
        b.jobs.update(job.id, { status: 'SUCCESS', finishedAt: new Date() }),
      ]);
      expect([a, c].filter((r) => r !== null)).toHaveLength(1);
      const last = newJob();
      await b.jobs.insert(last);
      await Promise.all([1, 2, 3, 4, 5].map((step) => b.jobs.update(last.id, { progress: { step, totalSteps: 5 } })));
      expect((await b.jobs.get(last.id))!.version).toBe(6);
    });

    it('pages an owner’s jobs newest first with opaque cursors, filtered by status and mode', async () => {
      const fresh = await b.keys.create('pager');
      const mine: Job[] = [];
      for (let i = 0; i < 7; i++) {
        const job = newJob({ ownerId: fresh.record.id, mode: i % 3 === 0 ? 'inpainting' : 'text2image' });
        await b.jobs.insert(job);
        mine.push(job);
        await b.jobs.insert(newJob({ ownerId: other })); // someone else's, in between
      }
      await b.jobs.update(mine[1]!.id, { status: 'SUCCESS' });
      await b.jobs.update(mine[4]!.id, { status: 'FAILURE' });
      const ids = async (query: Parameters<JobStore['listForOwner']>[1]) => {
        const seen: string[] = [];
        let after: string | null = null;
        let pages = 0;
        for (;;) {
          const page = await b.jobs.listForOwner(fresh.record.id, { ...query, after });
          pages++;
          seen.push(...page.edges.map((e) => e.job.id));
          expect(page.edges.length).toBeLessThanOrEqual(query.first);
          if (!page.hasNextPage) break;
          after = page.edges.at(-1)!.cursor;
        }
        return { seen, pages };
      };
      const newestFirst = mine.map((j) => j.id).reverse();
      expect(await ids({ first: 3 })).toEqual({ seen: newestFirst, pages: 3 });
      expect(await ids({ first: 7 })).toEqual({ seen: newestFirst, pages: 1 });
      expect((await ids({ first: 100, status: ['SUCCESS', 'FAILURE'] })).seen).toEqual([mine[4]!.id, mine[1]!.id]);
      expect((await ids({ first: 1, mode: ['inpainting'] })).seen).toEqual([mine[6]!.id, mine[3]!.id, mine[0]!.id]);
      expect((await ids({ first: 2, mode: ['inpainting'], status: ['PENDING'] })).seen).toEqual([mine[6]!.id, mine[3]!.id, mine[0]!.id]);
      expect((await ids({ first: 2, status: [], mode: null })).seen).toEqual(newestFirst);
      // The first page's last cursor, then the rest: exactly what comes after it.
      const first = await b.jobs.listForOwner(fresh.record.id, { first: 2 });
      const rest = await b.jobs.listForOwner(fresh.record.id, { first: 10, after: first.edges[1]!.cursor });
      expect(rest.edges.map((e) => e.job.id)).toEqual(newestFirst.slice(2));
      expect(rest.hasNextPage).toBe(false);
      // The edge carries the job as stored.
      expect(rest.edges[0]!.job).toEqual(await b.jobs.get(newestFirst[2]!));
    });

    it('refuses a cursor it did not issue', async () => {
      for (const after of ['nonsense', Buffer.from('job:abc').toString('base64url'), Buffer.from('seq:5').toString('base64url')]) {
        await expect(b.jobs.listForOwner(owner, { first: 5, after })).rejects.toBeInstanceOf(InvalidCursorError);
      }
    });

    it('keeps one job per owner and idempotency key, and finds it again with its fingerprint', async () => {
      const job = newJob();
      await b.jobs.insert(job, { key: 'retry-1', fingerprint: 'fp-a' });
      expect(await b.jobs.findByIdempotencyKey(owner, 'retry-1')).toEqual({ job, fingerprint: 'fp-a' });
      expect(await b.jobs.findByIdempotencyKey(owner, 'retry-2')).toBeNull();
      expect(await b.jobs.findByIdempotencyKey(other, 'retry-1')).toBeNull();
      await expect(b.jobs.insert(newJob(), { key: 'retry-1', fingerprint: 'fp-b' })).rejects.toBeInstanceOf(DuplicateIdempotencyKeyError);
      // Racing inserts with one key: exactly one lands.
      const racing = await Promise.allSettled([1, 2, 3].map(() => b.jobs.insert(newJob(), { key: 'race', fingerprint: 'fp' })));
      expect(racing.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of racing) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(DuplicateIdempotencyKeyError);
      // The same key is another owner's own.
      const theirs = newJob({ ownerId: other });
      await b.jobs.insert(theirs, { key: 'retry-1', fingerprint: 'fp-c' });
      expect((await b.jobs.findByIdempotencyKey(other, 'retry-1'))!.job.id).toBe(theirs.id);
      // A second job with an existing id is an error, but not an idempotency one.
      const again = b.jobs.insert({ ...newJob(), id: job.id });
      await expect(again).rejects.toThrow();
      await expect(again).rejects.not.toBeInstanceOf(DuplicateIdempotencyKeyError);
    });

    it('lists the unfinished jobs oldest first (by when they were recorded)', async () => {
      const before = new Set((await b.jobs.listActive()).map((j) => j.id));
      // createdAt out of order on purpose: the order is the insertion order.
      const a = newJob({ createdAt: new Date(5) });
      const c = newJob({ createdAt: new Date(1) });
      const d = newJob({ createdAt: new Date(3) });
      const e = newJob();
      for (const j of [a, c, d, e]) await b.jobs.insert(j);
      await b.jobs.update(c.id, { status: 'PROCESSING' });
      await b.jobs.update(d.id, { status: 'CANCELED' });
      const active = (await b.jobs.listActive()).filter((j) => !before.has(j.id));
      expect(active.map((j) => j.id)).toEqual([a.id, c.id, e.id]);
      expect(active[1]!.status).toBe('PROCESSING');
    });
  });

  describe.runIf(enabled)('API keys', () => {
    it('authenticates live keys only, and counts revocation at once', async () => {
      const { key, record } = await b.keys.create('  alice  ', ['read']);
      expect(record).toMatchObject({ name: 'alice', scopes: ['read'], revokedAt: null });
      expect(await b.keys.authenticate(key)).toEqual({ keyId: record.id, name: 'alice', scopes: ['read'] });
      expect(await b.keys.authenticate(`${key}x`)).toBeNull();
      expect(await b.keys.isActive(record.id)).toBe(true);
      expect(await b.keys.setScopes(record.id, ['generate', 'admin'])).toBe(true);
      expect((await b.keys.authenticate(key))!.scopes).toEqual(['generate', 'admin']);
      await expect(b.keys.setScopes(record.id, [])).rejects.toThrow(/at least one scope/);
      expect(await b.keys.revoke(record.id)).toBe(true);
      expect(await b.keys.revoke(record.id)).toBe(false);
      expect(await b.keys.setScopes(record.id, ['read'])).toBe(false);
      expect(await b.keys.authenticate(key)).toBeNull();
      expect(await b.keys.isActive(record.id)).toBe(false);
      expect(await b.keys.isActive('no-such-key')).toBe(false);
      await expect(b.keys.create('   ')).rejects.toThrow(/non-empty name/);
    });

    it('lists every key oldest first with its state, and counts them', async () => {
      const count = await b.keys.count();
      const x = await b.keys.create('list-x');
      const y = await b.keys.create('list-y', ['read']);
      await b.keys.revoke(x.record.id);
      expect(await b.keys.count()).toBe(count + 2);
      const listed = await b.keys.list();
      expect(listed).toHaveLength(count + 2);
      const [lx, ly] = [listed.find((k) => k.id === x.record.id)!, listed.find((k) => k.id === y.record.id)!];
      expect(listed.indexOf(lx)).toBeLessThan(listed.indexOf(ly));
      expect(lx.revokedAt).toBeInstanceOf(Date);
      expect(ly).toEqual(y.record);
      const times = listed.map((k) => k.createdAt.getTime());
      expect(times).toEqual([...times].sort((p, q) => p - q));
    });

    it('makes a webhook secret on first use, keeps it, rotates it on demand, and has none for a revoked key', async () => {
      const { record } = await b.keys.create('hooks');
      const first = await b.keys.webhookSecret(record.id);
      expect(first).toMatch(/^whsec_[\w-]{43}$/);
      expect(await b.keys.webhookSecret(record.id)).toBe(first);
      const [r1, r2] = await Promise.all([b.keys.webhookSecret(record.id), b.keys.webhookSecret(record.id)]);
      expect([r1, r2]).toEqual([first, first]);
      const rotated = await b.keys.webhookSecret(record.id, { rotate: true });
      expect(rotated).not.toBe(first);
      expect(await b.keys.webhookSecret(record.id)).toBe(rotated);
      await b.keys.revoke(record.id);
      expect(await b.keys.webhookSecret(record.id)).toBeNull();
      expect(await b.keys.webhookSecret(record.id, { rotate: true })).toBeNull();
      expect(await b.keys.webhookSecret('no-such-key')).toBeNull();
    });

    it('finds the key an operator names by id, whole key or prefix, and says why not', async () => {
      const a = await b.keys.create('find-a');
      const found = async (ref: string) => {
        const r = await b.keys.find(ref);
        return 'record' in r ? r.record.id : r.problem;
      };
      expect(await found(a.key)).toBe(a.record.id);
      expect(await found(a.key.slice(0, 20))).toBe(a.record.id);
      expect(await found(` ${a.record.id} `)).toBe(a.record.id);
      expect(await found(a.record.id.slice(0, 13))).toBe(a.record.id);
      expect(await found('sdk_')).toMatch(/too short to name a key/);
      expect(await found('')).toMatch(/give a key id/);
      expect(await found('zzzz-no-such')).toBe('no key has the id, key or prefix "zzzz-no-such"');
      await b.keys.revoke(a.record.id);
      expect(await found(a.key)).toBe(`the key "${a.key}" names (${a.record.id}) is already revoked`);
    });
  });

  describe.runIf(enabled)('webhook deliveries', () => {
    it('keeps one delivery per job, hands out what is due earliest first, and records each outcome', async () => {
      const base = 1_800_000_000_000;
      const jobs = [newJob(), newJob(), newJob()];
      for (const j of jobs) await b.jobs.insert({ ...j, webhookUrl: 'https://example.com/h' });
      const delivery = (i: number, at: number) => ({
        id: `d-${jobs[i]!.id}`,
        jobId: jobs[i]!.id,
        ownerId: owner,
        url: 'https://example.com/h',
        body: `{"n":${i}}`,
        nextAttemptAt: at,
      });
      await b.webhooks.add(delivery(0, base + 20));
      await b.webhooks.add(delivery(1, base + 10));
      await b.webhooks.add(delivery(2, base + 1_000));
      await b.webhooks.add({ ...delivery(0, base), id: 'second-for-job-0' }); // ignored
      expect(await b.webhooks.nextDueAt()).toBe(base + 10);

      // One at a time, as many as the deliverer has free slots, never one it is attempting.
      const earliest = await b.webhooks.due(base + 500, 1);
      expect(earliest).toEqual([{ ...delivery(1, base + 10), attempts: 0 }]);
      const next = await b.webhooks.due(base + 500, 10, new Set([earliest[0]!.id]));
      expect(next).toEqual([{ ...delivery(0, base + 20), attempts: 0 }]);
      const due = [...earliest, ...next];
      await b.webhooks.delivered(due[0]!, 1);
      await b.webhooks.retryLater(due[1]!, 1, base + 2_000, 'HTTP 500');
      await b.webhooks.gaveUp({ ...delivery(2, base + 1_000), attempts: 0 }, 1, 'HTTP 410');
      expect(await b.webhooks.nextDueAt()).toBe(base + 2_000);
      expect(await b.webhooks.due(base + 1_999, 10)).toEqual([]);
      expect(await b.webhooks.due(base + 2_000, 10)).toEqual([{ ...delivery(0, base + 2_000), attempts: 1 }]);
    });

    it('names the finished jobs that asked for a webhook and have no delivery', async () => {
      const before = new Set(await b.webhooks.jobsMissingDelivery());
      const hooked = newJob({ webhookUrl: 'https://example.com/h' });
      const unhooked = newJob();
      const running = newJob({ webhookUrl: 'https://example.com/h' });
      for (const j of [hooked, unhooked, running]) await b.jobs.insert(j);
      for (const j of [hooked, unhooked]) await b.jobs.update(j.id, { status: 'SUCCESS' });
      const missing = (await b.webhooks.jobsMissingDelivery()).filter((id) => !before.has(id));
      expect(missing).toEqual([hooked.id]);
      await b.webhooks.add({ id: `d-${hooked.id}`, jobId: hooked.id, ownerId: owner, url: 'u', body: '{}', nextAttemptAt: 0 });
      expect((await b.webhooks.jobsMissingDelivery()).filter((id) => !before.has(id))).toEqual([]);
    });
  });

  describe.runIf(enabled)('retention', () => {
    const DAY = 86_400_000;
    const finish = async (job: Job, status: 'SUCCESS' | 'FAILURE' | 'CANCELED', finishedAt: number, images: string[] = []) => {
      await b.jobs.insert(job);
      return b.jobs.update(job.id, {
        status,
        finishedAt: new Date(finishedAt),
        images: images.map((name) => ({ name, contentType: 'image/png', nsfw: false })),
        error: status === 'FAILURE' ? { code: 'ENGINE_FAILED', message: 'x' } : null,
      });
    };
    const deliver = (job: Job) =>
      b.webhooks.add({ id: `d-${job.id}`, jobId: job.id, ownerId: owner, url: 'https://example.com/h', body: '{}', nextAttemptAt: 0 });

    // Each test works at times long before every other test's jobs (which end from 2023 on), so
    // the cutoffs and notes here only ever reach this test's own rows.

    it('deletes finished jobs that ended before the cutoff with their deliveries and notes; never an unfinished or later one', async () => {
      const T = 1_000_000_000_000;
      clock.now = T;
      const oldOk = newJob({ webhookUrl: 'https://example.com/h' });
      const oldFailed = newJob({ webhookUrl: 'https://example.com/h' });
      const recent = newJob({ webhookUrl: 'https://example.com/h' });
      const pending = newJob({ createdAt: new Date(T - DAY) });
      const running = newJob({ createdAt: new Date(T - DAY) });
      await finish(oldOk, 'SUCCESS', T, [`${oldOk.id}-a.png`, `${oldOk.id}-b.png`]);
      await finish(oldFailed, 'FAILURE', T + 1);
      await finish(recent, 'SUCCESS', T + 10_000, [`${recent.id}-a.png`]);
      await b.jobs.insert(pending);
      await b.jobs.insert(running);
      await b.jobs.update(running.id, { status: 'PROCESSING', startedAt: new Date(T - DAY) });
      for (const job of [oldOk, oldFailed, recent]) await deliver(job);
      // The committed images are noted, and one more of an attempt that never committed it.
      await b.retention.record(oldOk.id, [`${oldOk.id}-a.png`, `${oldOk.id}-b.png`, `${oldOk.id}-retry.png`]);
      await b.retention.record(oldOk.id, [`${oldOk.id}-a.png`]); // noted twice: one note
      await b.retention.record(running.id, [`${running.id}-a.png`]);

      const cutoff = new Date(T + 5_000);
      const expired = await b.retention.expiredJobs(cutoff, 10);
      expect(expired.map((j) => j.id)).toEqual([oldOk.id, oldFailed.id]);
      expect([...expired[0]!.images].sort()).toEqual([`${oldOk.id}-a.png`, `${oldOk.id}-b.png`, `${oldOk.id}-retry.png`]);
      expect(expired[1]!.images).toEqual([]);
      // Oldest first, a batch at a time.
      expect((await b.retention.expiredJobs(cutoff, 1)).map((j) => j.id)).toEqual([oldOk.id]);

      // Whatever the caller passes, only the finished ones older than the cutoff go.
      expect(await b.retention.deleteJobs([oldOk.id, oldFailed.id, recent.id, pending.id, running.id, 'no-such-job'], cutoff)).toBe(2);
      expect(await b.retention.deleteJobs([], cutoff)).toBe(0);
      for (const gone of [oldOk, oldFailed]) expect(await b.jobs.get(gone.id)).toBeNull();
      for (const kept of [recent, pending, running]) expect(await b.jobs.get(kept.id)).not.toBeNull();
      expect(await b.rowsOf('webhook_deliveries', [oldOk.id, oldFailed.id])).toBe(0);
      expect(await b.rowsOf('webhook_deliveries', [recent.id])).toBe(1);
      expect(await b.rowsOf('job_images', [oldOk.id])).toBe(0);
      expect(await b.rowsOf('job_images', [running.id])).toBe(1);
      expect(await b.retention.expiredJobs(cutoff, 10)).toEqual([]);
      // Even with a cutoff far in the future, an unfinished job stays.
      expect(await b.retention.deleteJobs([pending.id, running.id], new Date(T + 365 * DAY))).toBe(0);
      await b.retention.forgetImages([`${running.id}-a.png`]);
    });

    it('tells what became of each noted image, page by page after a cursor, and forgets what it is told to', async () => {
      const W = 950_000_000_000;
      const pendingJob = newJob();
      const succeeded = newJob();
      const failed = newJob();
      await b.jobs.insert(pendingJob);
      await finish(succeeded, 'SUCCESS', W, [`${succeeded.id}-kept.png`]);
      await finish(failed, 'FAILURE', W);
      clock.now = W;
      await b.retention.record(pendingJob.id, [`${pendingJob.id}-p.png`]);
      await b.retention.record(succeeded.id, [`${succeeded.id}-kept.png`, `${succeeded.id}-lost.png`]);
      await b.retention.record(failed.id, [`${failed.id}-f.png`]);
      await b.retention.record('a-job-that-is-gone', ['gone-g.png']);
      clock.now = W + 60_000;
      await b.retention.record(failed.id, [`${failed.id}-late.png`]);

      const all = async (before: Date, limit: number) => {
        const seen: NotedImage[] = [];
        let cursor: NotedImageCursor | null = null;
        for (let pages = 0; pages < 50; pages++) {
          const page = await b.retention.notedImages(before, cursor, limit);
          expect(page.length).toBeLessThanOrEqual(limit);
          seen.push(...page);
          if (page.length < limit) break;
          cursor = page.at(-1)!;
        }
        return seen;
      };
      const expected = {
        [`${pendingJob.id}-p.png`]: 'pending',
        [`${succeeded.id}-kept.png`]: 'referenced',
        [`${succeeded.id}-lost.png`]: 'orphan',
        [`${failed.id}-f.png`]: 'orphan',
        'gone-g.png': 'orphan',
      };
      const mine = (notes: NotedImage[]) => notes.filter((n) => n.name in expected || n.name === `${failed.id}-late.png`);
      const firstWritten = mine(await all(new Date(W + 1), 2));
      expect(Object.fromEntries(firstWritten.map((n) => [n.name, n.fate]))).toEqual(expected);
      expect(firstWritten.map((n) => n.writtenAt.getTime())).toEqual([W, W, W, W, W]);
      // In (writtenAt, name) order, each note once, whatever the page size.
      expect(firstWritten.map((n) => n.name)).toEqual(Object.keys(expected).sort());
      expect(mine(await all(new Date(W + 1), 1)).map((n) => n.name)).toEqual(Object.keys(expected).sort());
      const later = mine(await all(new Date(W + 60_001), 3));
      expect(later.map((n) => n.name)).toEqual([...Object.keys(expected).sort(), `${failed.id}-late.png`]);

      await b.retention.forgetImages([`${succeeded.id}-kept.png`, 'gone-g.png', 'never-noted.png']);
      const remaining = [`${failed.id}-f.png`, `${pendingJob.id}-p.png`, `${succeeded.id}-lost.png`].sort();
      expect(mine(await all(new Date(W + 60_001), 10)).map((n) => n.name)).toEqual([...remaining, `${failed.id}-late.png`]);
      await b.retention.forgetImages([`${failed.id}-f.png`, `${pendingJob.id}-p.png`, `${succeeded.id}-lost.png`, `${failed.id}-late.png`]);
      expect(mine(await all(new Date(W + 60_001), 10))).toEqual([]);
    });

    it('sweeps end to end through an image store: expired jobs with images and deliveries, orphans after the grace', async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'sd-store-contract-images-'));
      const images = new LocalImageStore({ dir });
      await images.init();
      const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
      try {
        const now = 500_000_000_000;
        const put = async () => (await images.put(PNG, 'image/png')).name;
        const onDisk = async (name: string) => (await images.stat(name)) !== null;
        const expired = newJob({ webhookUrl: 'https://example.com/h' });
        const kept = newJob();
        const failed = newJob();
        const running = newJob();
        const [e1, k1, f1, r1] = [await put(), await put(), await put(), await put()];
        clock.now = now - 40 * DAY;
        await b.retention.record(expired.id, [e1]);
        await finish(expired, 'SUCCESS', now - 40 * DAY, [e1]);
        await deliver(expired);
        clock.now = now - 10 * DAY;
        await b.retention.record(kept.id, [k1]);
        await finish(kept, 'SUCCESS', now - 10 * DAY, [k1]);
        clock.now = now - DAY;
        await b.retention.record(failed.id, [f1]);
        await finish(failed, 'FAILURE', now - DAY);
        await b.jobs.insert(running);
        await b.retention.record(running.id, [r1]);

        const sweeper = new RetentionSweeper(
          { store: b.retention, images, lock: b.sweepLock, logger: createLogger('silent'), clock: () => now },
          { maxAgeMs: 30 * DAY, sweepIntervalMs: 3_600_000, orphanGraceMs: 10 * 60_000, batchSize: 1 },
        );
        expect(await sweeper.sweep()).toMatchObject({ skipped: false, jobsDeleted: 1, imagesDeleted: 1, orphansDeleted: 1 });
        expect(await b.jobs.get(expired.id)).toBeNull();
        expect(await b.rowsOf('webhook_deliveries', [expired.id])).toBe(0);
        for (const job of [kept, failed, running]) expect(await b.jobs.get(job.id)).not.toBeNull();
        expect([await onDisk(e1), await onDisk(k1), await onDisk(f1), await onDisk(r1)]).toEqual([false, true, false, true]);
        // The referenced note is settled, the orphan's forgotten; the unfinished job's stays.
        expect(await b.rowsOf('job_images', [expired.id, kept.id, failed.id])).toBe(0);
        expect(await b.rowsOf('job_images', [running.id])).toBe(1);
        await b.retention.forgetImages([r1]);
      } finally {
        images.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('runs the sweep on one process at a time', async () => {
      const name = 'sd-retention-sweep';
      const other = await b.otherProcessLock();
      const held = await b.sweepLock.tryAcquire(name);
      expect(held).not.toBeNull();
      expect(held!.lost).toBe(false);
      expect(await other.tryAcquire(name)).toBeNull();
      // A sweep elsewhere finds it held and does nothing.
      const elsewhere = new RetentionSweeper(
        { store: b.retention, images: new LocalImageStore({ dir: tmpdir() }), lock: other, logger: createLogger('silent') },
        { maxAgeMs: 30 * DAY, sweepIntervalMs: 3_600_000 },
      );
      expect(await elsewhere.sweep()).toMatchObject({ skipped: true, jobsDeleted: 0, orphansDeleted: 0 });
      // Another name is another lock.
      const unrelated = await other.tryAcquire('another-task');
      expect(unrelated).not.toBeNull();
      await unrelated!.release();
      await held!.release();
      await held!.release(); // twice is harmless
      const theirs = await other.tryAcquire(name);
      expect(theirs).not.toBeNull();
      expect(await b.sweepLock.tryAcquire(name)).toBeNull();
      await theirs!.release();
      const again = await b.sweepLock.tryAcquire(name);
      expect(again).not.toBeNull();
      await again!.release();
    });
  });
});
