import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CreateText2ImageDocument, JobDocument, JobStatusDocument, JobsDocument } from '../src/client/generated/graphql.js';
import { PgKeyStore } from '../src/auth/pg-key-store.js';
import { StorageUnavailableError } from '../src/jobs/job-store.js';
import { PgJobStore } from '../src/jobs/pg-job-store.js';
import { PgSweepLock } from '../src/retention/pg-sweep-lock.js';
import { createPgPool, migratePostgres, PG_SCHEMA_VERSION, type PgPool } from '../src/storage/postgres.js';
import { PgWebhookStore } from '../src/webhooks/pg-webhook-store.js';
import { TcpProxy } from './fixtures/tcp-proxy.js';
import { testJob } from './helpers/jobs.js';
import { createTestSchema, POSTGRES_URL, runPostgresTests, urlWithSchema, type TestSchema } from './helpers/postgres.js';
import { startServerProcess } from './helpers/server-process.js';
import { collect, LOCAL_ENGINE, startTestServer, waitFor } from './helpers/test-server.js';

/** PostgreSQL as the system of record (DATABASE_URL): migrations, outages, the whole flow, the keys command. */

const pools: PgPool[] = [];
const pool = (url: string) => {
  const p = createPgPool(url);
  pools.push(p);
  return p;
};
const schemas: TestSchema[] = [];
const schema = async (label: string) => {
  const s = await createTestSchema(`pg_${label}`);
  schemas.push(s);
  return s;
};
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end().catch(() => {})));
  await Promise.all(schemas.map((s) => s.drop()));
});

/** The test database's URL through a proxy on loopback (a test fixture), in the given schema. */
function proxiedUrl(proxy: TcpProxy, schemaName: string): string {
  const url = new URL(urlWithSchema(schemaName));
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  return url.toString();
}
const target = () => {
  const url = new URL(POSTGRES_URL);
  return { host: url.hostname, port: Number(url.port || 5432) };
};

describe.runIf(runPostgresTests)('migrations', () => {
  it('apply once when several processes start at once, each version in its own transaction', async () => {
    const s = await schema('race');
    const racers = [1, 2, 3, 4].map(() => pool(s.url));
    const results = await Promise.all(racers.map((p) => migratePostgres(p)));
    const all = Array.from({ length: PG_SCHEMA_VERSION }, (_, i) => i + 1);
    // One of them applied everything; the others found it done once they had the lock.
    expect(results.map((r) => r.applied).sort((a, b) => b.length - a.length)).toEqual([all, [], [], []]);
    const { rows } = await racers[0]!.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    expect(rows.map((r) => r.version)).toEqual(all);
    const tables = await racers[0]!.query<{ table_name: string }>(
      'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name',
      [s.name],
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(['api_keys', 'job_images', 'jobs', 'schema_migrations', 'webhook_deliveries']);
    expect((await migratePostgres(racers[1]!)).applied).toEqual([]);
  });

  it('make one first key when several servers start at once on an empty database (the others see it and print none)', async () => {
    const s = await schema('first_key');
    const racers = [1, 2, 3, 4].map(() => pool(s.url));
    await migratePostgres(racers[0]!);
    const made = await Promise.all(racers.map((p) => new PgKeyStore(p).createFirst('default')));
    expect(made.filter((m) => m !== null)).toHaveLength(1);
    expect(await new PgKeyStore(racers[0]!).count()).toBe(1);
    expect(await new PgKeyStore(racers[1]!).createFirst('default')).toBeNull();
  });

  it('roll a failing migration back whole, apply the rest once it is fixed, and refuse a schema newer than the code', async () => {
    const s = await schema('rollback');
    const p = pool(s.url);
    const one = 'CREATE TABLE a (x INT)';
    const broken = 'CREATE TABLE b (x INT); INSERT INTO b VALUES (1); SELECT 1 / 0';
    await expect(migratePostgres(p, [one, broken])).rejects.toThrow(/division by zero/);
    const exists = async (table: string) =>
      (await p.query('SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2', [s.name, table])).rowCount ===
      1;
    expect(await exists('a')).toBe(true);
    expect(await exists('b')).toBe(false);
    expect((await p.query('SELECT version FROM schema_migrations')).rows).toEqual([{ version: 1 }]);
    expect(await migratePostgres(p, [one, 'CREATE TABLE b (x INT)'])).toEqual({ applied: [2] });
    await expect(migratePostgres(p, [one])).rejects.toThrow('the database is at schema version 2, newer than this server (1)');
    // The advisory lock was given back each time: another connection takes it at once.
    expect(await migratePostgres(pool(s.url), [one, 'CREATE TABLE b (x INT)'])).toEqual({ applied: [] });
  });
});

describe.runIf(runPostgresTests)('while PostgreSQL cannot be reached', () => {
  let proxy: TcpProxy;
  let s: TestSchema;
  beforeAll(async () => {
    s = await schema('outage');
    proxy = new TcpProxy(target());
    await proxy.open();
  });
  afterAll(() => proxy?.close());

  it('the stores throw StorageUnavailableError, write nothing, and work again once it is back, on the same pool', async () => {
    const p = pool(proxiedUrl(proxy, s.name));
    await migratePostgres(p);
    const keys = new PgKeyStore(p);
    const jobs = new PgJobStore(p);
    const owner = (await keys.create('owner')).record.id;
    await jobs.insert(testJob({ id: 'before', ownerId: owner }));

    await proxy.close();
    for (const attempt of [
      () => jobs.insert(testJob({ id: 'during', ownerId: owner })),
      () => jobs.get('before'),
      () => jobs.update('before', { status: 'PROCESSING' }),
      () => keys.authenticate('sdk_whatever'),
      () => new PgWebhookStore(p, 1000).due(Date.now(), 5),
    ]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StorageUnavailableError);
      expect((err as StorageUnavailableError).reason).toBe('unreachable');
    }

    await proxy.open();
    await jobs.insert(testJob({ id: 'after', ownerId: owner }));
    expect((await jobs.get('before'))!.status).toBe('PENDING');
    expect(await jobs.get('during')).toBeNull();
    expect((await jobs.get('after'))!.id).toBe('after');
  });

  it('a server answers STORAGE_UNAVAILABLE (503, Retry-After) over GraphQL and REST, creates nothing, stays up, and recovers without a restart', async () => {
    const url = proxiedUrl(proxy, s.name);
    const server = await startTestServer({ env: { DATABASE_URL: url } });
    server.upstream.behaviour.hold = true; // the jobs stay unfinished: the test looks at creating them
    const direct = pool(s.url);
    const jobCount = async () => Number((await direct.query<{ n: string }>('SELECT COUNT(*) AS n FROM jobs')).rows[0]!.n);
    try {
      const first = await server.gql(CreateText2ImageDocument, { input: { prompt: 'before the outage' } });
      expect(first.errors).toBeUndefined();
      const count = await jobCount();
      const readyz = async () => {
        const res = await fetch(`${server.url}/readyz`);
        return { status: res.status, body: (await res.json()) as { checks: Record<string, { status: string; error?: string }> } };
      };
      expect(await readyz()).toEqual({
        status: 200,
        body: { status: 'ready', checks: { database: { status: 'ok' }, images: { status: 'ok' } } },
      });

      await proxy.close();
      // Not ready while the database cannot be reached, by a code and nothing else (no URL, no message).
      const notReady = await readyz();
      expect(notReady.status).toBe(503);
      expect(notReady.body).toMatchObject({ status: 'unavailable', failing: ['database'], checks: { images: { status: 'ok' } } });
      expect(notReady.body.checks.database!.status).toBe('failed');
      expect(notReady.body.checks.database!.error).toMatch(/^(ECONNREFUSED|ECONNRESET|DATABASE_UNREACHABLE|timed out)$/);
      const graphql = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'api-key': server.key },
        body: JSON.stringify({ query: print(CreateText2ImageDocument), variables: { input: { prompt: 'during' } } }),
      });
      expect(graphql.status).toBe(503);
      expect(graphql.headers.get('retry-after')).toBe('5');
      const body = (await graphql.json()) as { errors: { message: string; extensions: { code: string } }[] };
      expect(body.errors[0]!.extensions.code).toBe('STORAGE_UNAVAILABLE');
      expect(body.errors[0]!.message).toMatch(/its database cannot be reached/);

      const rest = await fetch(`${server.url}/sd/text2image/v1`, {
        method: 'POST',
        headers: { 'api-key': server.key },
        body: JSON.stringify({ prompt: 'during' }),
      });
      expect(rest.status).toBe(503);
      expect(rest.headers.get('retry-after')).toBe('5');
      expect(await rest.json()).toMatchObject({ status: 'FAILURE', code: 'STORAGE_UNAVAILABLE', retry_after: 5 });
      // Reads too: the client may retry them.
      const read = await server.gql(JobDocument, { id: first.data!.text2image.id });
      expect(read.errors![0]!.extensions!.code).toBe('STORAGE_UNAVAILABLE');
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      // A WebSocket whose key cannot be checked: closed with 1013, "try again later".
      const socket = new WebSocket(`${server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
      const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
      await new Promise((resolve) => socket.once('open', resolve));
      socket.send(JSON.stringify({ type: 'connection_init', payload: { apiKey: server.key } }));
      expect(await closed).toBe(1013);

      await proxy.open();
      const after = await waitFor(async () => {
        const r = await server.gql(CreateText2ImageDocument, { input: { prompt: 'after the outage' } });
        return r.errors ? null : r;
      });
      expect(after.data!.text2image.status).toBe('PENDING');
      expect(await jobCount()).toBe(count + 1);
      expect((await readyz()).status).toBe(200);
      const listed = await server.gql(JobsDocument, { first: 10 });
      expect(listed.data!.jobs.edges.map((e) => e.node.id)).toEqual([after.data!.text2image.id, first.data!.text2image.id]);
    } finally {
      server.upstream.behaviour.hold = false;
      server.upstream.release();
      await server.stop();
    }
  });
  it('jobs accepted before an outage still end: their progress and results are recorded once the database is back', async () => {
    const server = await startTestServer({ env: { DATABASE_URL: proxiedUrl(proxy, s.name) } });
    const direct = pool(s.url);
    const stored = async (id: string) =>
      (await direct.query<{ status: string; engine_handle: string | null }>('SELECT status, engine_handle FROM jobs WHERE id = $1', [id]))
        .rows[0]!;
    try {
      // A: handed to the engine and recorded so, held there.
      server.upstream.behaviour.hold = true;
      const a = (await server.gql(CreateText2ImageDocument, { input: { prompt: 'running through the outage' } })).data!.text2image;
      await waitFor(async () => (await stored(a.id)).engine_handle);
      // B: its submission refused for now (the engine retries once, then the submitter in a second).
      const submits = server.upstream.submits;
      server.upstream.behaviour.unavailableSubmits = 2;
      const b = (await server.gql(CreateText2ImageDocument, { input: { prompt: 'submitted during the outage' } })).data!.text2image;
      await waitFor(() => server.upstream.submits >= submits + 2);

      await proxy.close();
      server.upstream.behaviour.hold = false;
      server.upstream.release();
      // B reaches the engine, and both finish there, while nothing can be recorded.
      await waitFor(() => server.upstream.submits >= submits + 3);
      await new Promise((r) => setTimeout(r, 1_000));
      expect([...server.upstream.jobs.values()].every((j) => j.step === j.totalSteps)).toBe(true);

      await proxy.open();
      await waitFor(async () => (await stored(a.id)).status === 'SUCCESS' && (await stored(b.id)).status === 'SUCCESS', 20_000);
      for (const id of [a.id, b.id]) {
        const job = (await server.gql(JobDocument, { id })).data!.job!;
        expect(job.status).toBe('SUCCESS');
        expect((await fetch(job.downloadUrls[0]!)).status).toBe(200);
      }
      expect(server.upstream.submits).toBe(submits + 3); // B was submitted once it could be, not again
    } finally {
      await server.stop();
    }
  });
});

describe.runIf(runPostgresTests)('a server on PostgreSQL', () => {
  let s: TestSchema;
  let dataDir: string;
  beforeAll(async () => {
    s = await schema('flow');
    dataDir = mkdtempSync(path.join(tmpdir(), 'sd-api-pg-flow-'));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('runs a job on the local engine: create → subscription → SUCCESS, recorded in Postgres and seen by a second server', async () => {
    const server = await startTestServer({ dataDir, env: { ...LOCAL_ENGINE, DATABASE_URL: s.url } });
    let jobId: string;
    try {
      const created = await server.gql(CreateText2ImageDocument, {
        input: { prompt: 'a lighthouse at dusk', width: 64, height: 64, numInferenceSteps: 4, safetyChecker: false, seed: 7 },
      });
      expect(created.errors).toBeUndefined();
      jobId = created.data!.text2image.id;
      expect(created.data!.text2image.status).toBe('PENDING');

      const { values, errors } = await collect(server.ws(), JobStatusDocument, { id: jobId }, 60_000);
      expect(errors).toEqual([]);
      const statuses = values.map((v) => v.jobStatus.status);
      expect(statuses).toContain('PROCESSING');
      expect(statuses.at(-1)).toBe('SUCCESS');
      const done = values.at(-1)!.jobStatus;
      expect(done.downloadUrls).toHaveLength(1);
      const image = await fetch(done.downloadUrls[0]!);
      expect(image.status).toBe(200);
      expect(
        Buffer.from(await image.arrayBuffer())
          .subarray(1, 4)
          .toString('ascii'),
      ).toBe('PNG');

      const row = (
        await pool(s.url).query<{ status: string; version: number; images: unknown[]; owner_id: string }>(
          'SELECT status, version, images, owner_id FROM jobs WHERE id = $1',
          [jobId],
        )
      ).rows[0]!;
      expect(row).toMatchObject({ status: 'SUCCESS', images: [expect.objectContaining({ contentType: 'image/png' })] });
      expect(row.version).toBeGreaterThan(2);
    } finally {
      await server.stop({ keepData: true });
    }

    // Another process on the same database (and image folder): the same key and the same job.
    const second = await startTestServer({ dataDir, env: { ...LOCAL_ENGINE, DATABASE_URL: s.url } });
    try {
      const job = await second.gql(JobDocument, { id: jobId }, server.key);
      expect(job.errors).toBeUndefined();
      expect(job.data!.job).toMatchObject({ id: jobId, status: 'SUCCESS' });
      expect((await fetch(job.data!.job!.downloadUrls[0]!)).status).toBe(200);
    } finally {
      await second.stop({ keepData: true });
    }
  });

  it('without REDIS_URL, a second server on the same database is refused at start with the reason, the first unharmed; it starts once the first stops', async () => {
    const server = await startTestServer({ dataDir, env: { ...LOCAL_ENGINE, DATABASE_URL: s.url } });
    const env = { ...LOCAL_ENGINE, DATABASE_URL: s.url, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn' };
    try {
      const refused = startServerProcess(env, 60_000);
      expect(await refused.exited).toBe(2);
      expect(refused.output()).toMatch(/another server process already runs jobs on this database without REDIS_URL/);
      // The first one runs jobs as before.
      const created = await server.gql(CreateText2ImageDocument, {
        input: { prompt: 'still here', width: 64, height: 64, numInferenceSteps: 2, safetyChecker: false },
      });
      const { values } = await collect(server.ws(), JobStatusDocument, { id: created.data!.text2image.id }, 60_000);
      expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
    } finally {
      await server.stop({ keepData: true });
    }
    const next = startServerProcess(env, 60_000);
    try {
      expect(await next.url).toMatch(/^http:/);
    } finally {
      next.child.kill('SIGTERM');
      await next.exited;
    }
  }, 120_000);

  it('manages its keys with `npm run --silent keys` against DATABASE_URL, counting at once on a running server', async () => {
    const server = await startTestServer({ dataDir, env: { DATABASE_URL: s.url } });
    // An empty DATA_DIR for the command: the key must go to Postgres, not to a SQLite file.
    const elsewhere = mkdtempSync(path.join(tmpdir(), 'sd-api-pg-keys-'));
    const keys = async (...args: string[]) =>
      (
        await promisify(execFile)('npm', ['run', '--silent', 'keys', '--', ...args], {
          env: { ...process.env, DATABASE_URL: s.url, DATA_DIR: elsewhere },
          timeout: 60_000,
        })
      ).stdout.trim();
    try {
      const created = (await keys('create', '--name', 'from-the-cli', '--scopes', 'read-only')).split('\n');
      const key = created.at(-1)!;
      const id = /created key (\S+)/.exec(created[0]!)![1]!;
      expect(key).toMatch(/^sdk_\S+$/);
      const listed = await server.gql(JobsDocument, { first: 1 }, key);
      expect(listed.errors).toBeUndefined();
      const refused = await server.gql(CreateText2ImageDocument, { input: { prompt: 'x' } }, key);
      expect(refused.errors![0]!.extensions!.code).toBe('FORBIDDEN');

      expect(await keys('revoke', id)).toMatch(/^revoked /);
      const revoked = await server.gql(JobsDocument, { first: 1 }, key);
      expect(revoked.errors![0]!.extensions!.code).toBe('UNAUTHENTICATED');
      expect((await server.app.keys.list()).find((k) => k.id === id)!.revokedAt).toBeInstanceOf(Date);
      expect(existsSync(path.join(elsewhere, 'sd-api.sqlite'))).toBe(false);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
      await server.stop({ keepData: true });
    }
  });

  it('on a database nobody has migrated yet, the keys command applies the migrations itself', async () => {
    const fresh = await schema('fresh_keys');
    const { stdout } = await promisify(execFile)('npm', ['run', '--silent', 'keys', '--', 'list'], {
      env: { ...process.env, DATABASE_URL: fresh.url },
      timeout: 60_000,
    });
    expect(stdout.trim()).toBe('');
    const { rows } = await pool(fresh.url).query('SELECT version FROM schema_migrations');
    expect(rows).toHaveLength(PG_SCHEMA_VERSION);
  });
});

describe.runIf(runPostgresTests)('webhook deliveries shared by two processes', () => {
  it('are claimed by one process at a time, and come back after a claim runs out', async () => {
    const s = await schema('claims');
    const [a, b] = [pool(s.url), pool(s.url)];
    await Promise.all([migratePostgres(a), migratePostgres(b)]);
    const owner = (await new PgKeyStore(a).create('o')).record.id;
    const jobs = new PgJobStore(a);
    const storeA = new PgWebhookStore(a, 60_000);
    const storeB = new PgWebhookStore(b, 60_000);
    const now = Date.now();
    for (let i = 0; i < 12; i++) {
      await jobs.insert(testJob({ id: `j${i}`, ownerId: owner, webhookUrl: 'https://example.com/h' }));
      await storeA.add({
        id: `d${i}`,
        jobId: `j${i}`,
        ownerId: owner,
        url: 'https://example.com/h',
        body: '{}',
        nextAttemptAt: now - 1000 + i,
      });
    }
    const [fromA, fromB] = await Promise.all([storeA.due(now, 12), storeB.due(now, 12)]);
    const ids = [...fromA, ...fromB].map((d) => d.id).sort();
    expect(ids).toEqual(Array.from({ length: 12 }, (_, i) => `d${i}`).sort());
    expect(await storeA.due(now, 12)).toEqual([]);
    // Nobody finished them (the processes died, say): after the claim, they are due again.
    expect(await storeB.due(now + 60_000, 12)).toHaveLength(12);
  });
});

describe.runIf(runPostgresTests)('a pool whose server is not there', () => {
  it('fails at once with StorageUnavailableError, not a crash', async () => {
    const proxy = new TcpProxy(target());
    await proxy.open();
    const port = proxy.port;
    await proxy.close(); // nothing listens there now
    const url = new URL(POSTGRES_URL);
    url.hostname = '127.0.0.1';
    url.port = String(port);
    const started = Date.now();
    const err = await new PgJobStore(pool(url.toString())).get('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageUnavailableError);
    expect(Date.now() - started).toBeLessThan(6_000);
  });
});

describe.runIf(runPostgresTests)('retention on PostgreSQL', () => {
  it('the sweep lock holds across processes, and a lease whose connection is cut is lost and frees the lock', async () => {
    const s = await schema('sweep_lock');
    const proxy = new TcpProxy(target());
    await proxy.open();
    try {
      const here = new PgSweepLock(pool(proxiedUrl(proxy, s.name)));
      const elsewhere = new PgSweepLock(pool(s.url));
      // The same name in another schema (another deployment, or test file) is another lock.
      const otherSchema = await schema('sweep_lock_other');
      const unrelated = new PgSweepLock(pool(otherSchema.url));
      const lease = await here.tryAcquire('sd-retention-sweep');
      expect(lease).not.toBeNull();
      expect(await elsewhere.tryAcquire('sd-retention-sweep')).toBeNull();
      const theirs = await unrelated.tryAcquire('sd-retention-sweep');
      expect(theirs).not.toBeNull();
      await theirs!.release();

      await proxy.close(); // the holder's connection is cut
      await waitFor(() => lease!.lost);
      // The server ends the session, and its advisory lock with it.
      const taken = await waitFor(() => elsewhere.tryAcquire('sd-retention-sweep'));
      await lease!.release(); // nothing to unlock, and no error
      await taken.release();
    } finally {
      await proxy.close();
    }
  });

  it('a server on Postgres notes its images and sweeps expired jobs with their images and deliveries, skipping while another process sweeps', async () => {
    const s = await schema('retention');
    const receiver = createServer((_req, res) => res.writeHead(200).end('ok'));
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    let offset = 0;
    const server = await startTestServer({
      env: { DATABASE_URL: s.url, WEBHOOK_ALLOW_HOSTS: '127.0.0.1', JOB_RETENTION: '30d' },
      app: { clock: () => Date.now() + offset },
    });
    const direct = pool(s.url);
    const count = async (sql: string, id: string) => Number((await direct.query<{ n: string }>(sql, [id])).rows[0]!.n);
    const finish = async (prompt: string) => {
      const created = await server.gql(CreateText2ImageDocument, { input: { prompt, webhookUrl: hook } });
      expect(created.errors).toBeUndefined();
      const { values } = await collect(server.ws(), JobStatusDocument, { id: created.data!.text2image.id });
      const job = values.at(-1)!.jobStatus;
      expect(job.status).toBe('SUCCESS');
      await waitFor(
        async () => (await count(`SELECT COUNT(*) AS n FROM webhook_deliveries WHERE job_id = $1 AND status = 'DELIVERED'`, job.id)) === 1,
      );
      return job;
    };
    try {
      const old = await finish('old');
      // The updater noted the image before the job committed it.
      expect(await count('SELECT COUNT(*) AS n FROM job_images WHERE job_id = $1', old.id)).toBe(1);
      offset = 31 * 86_400_000;
      const recent = await finish('recent');

      // Another process holds the sweep: this one skips the round.
      const held = await new PgSweepLock(pool(s.url)).tryAcquire('sd-retention-sweep');
      expect(held).not.toBeNull();
      expect(await server.app.retention.sweep()).toMatchObject({ skipped: true, jobsDeleted: 0 });
      expect(await count('SELECT COUNT(*) AS n FROM jobs WHERE id = $1', old.id)).toBe(1);
      await held!.release();

      expect(await server.app.retention.sweep()).toMatchObject({ skipped: false, jobsDeleted: 1, imagesDeleted: 1 });
      expect(await count('SELECT COUNT(*) AS n FROM jobs WHERE id = $1', old.id)).toBe(0);
      expect(await count('SELECT COUNT(*) AS n FROM webhook_deliveries WHERE job_id = $1', old.id)).toBe(0);
      expect(await count('SELECT COUNT(*) AS n FROM job_images WHERE job_id = $1', old.id)).toBe(0);
      expect((await fetch(old.downloadUrls[0]!)).status).toBe(404);
      expect((await server.gql(JobDocument, { id: recent.id })).data!.job!.status).toBe('SUCCESS');
      expect(await count('SELECT COUNT(*) AS n FROM webhook_deliveries WHERE job_id = $1', recent.id)).toBe(1);
      expect((await fetch(recent.downloadUrls[0]!)).status).toBe(200);
    } finally {
      await server.stop();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});
