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
  close(): Promise<void>;
}

async function sqliteBackend(): Promise<Backend> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sd-store-contract-'));
  const file = path.join(dir, 'sd-api.sqlite');
  const db = openDatabase(file);
  const walSync = new WalSync(file, false);
  const jobs = new SqliteJobStore(db, walSync);
  return {
    jobs,
    keys: new SqliteKeyStore(db, walSync),
    webhooks: new SqliteWebhookStore(db, new WriteBatcher(db, walSync)),
    async close() {
      await jobs.flush();
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
  await pool.query('TRUNCATE webhook_deliveries, jobs, api_keys');
  return {
    jobs: new PgJobStore(pool),
    keys: new PgKeyStore(pool),
    webhooks: new PgWebhookStore(pool, 60_000),
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
});
