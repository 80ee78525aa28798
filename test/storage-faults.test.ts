import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { print } from 'graphql';
import { afterEach, describe, expect, it } from 'vitest';
import { CreateText2ImageDocument } from '../src/client/generated/graphql.js';
import { SqliteJobStore, StorageUnavailableError } from '../src/jobs/job-store.js';
import type { Job } from '../src/jobs/job.js';
import { openDatabase, WalSync, type SqliteDatabase } from '../src/storage/sqlite.js';
import { FakeImagePipeline } from './fixtures/fake-imagepipeline.js';
import { startTestServer } from './helpers/test-server.js';
import { testJob, testParams } from './helpers/jobs.js';

const job = (id: string): Job =>
  testJob({ id, params: testParams({ prompt: 'x'.repeat(2000), numInferenceSteps: 20 }), createdAt: new Date() });

describe('a job store whose disk is full', () => {
  let dir: string;
  let db: SqliteDatabase;
  let walSync: WalSync;
  afterEach(() => {
    walSync?.close();
    db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses new jobs with StorageUnavailableError, keeps what it has, and takes jobs again when there is room', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sd-api-full-'));
    const file = path.join(dir, 'db.sqlite');
    db = openDatabase(file);
    walSync = new WalSync(file, true);
    db.prepare("INSERT INTO api_keys (id, name, key_hash, key_prefix, scopes, created_at) VALUES ('owner', 'o', 'h', 'p', '[]', 0)").run();
    const store = new SqliteJobStore(db, walSync);
    await store.insert(job('kept'));
    // SQLite's own page limit stands in for a full disk: writes that need a new page fail SQLITE_FULL.
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages}`);
    let refused: unknown;
    for (let i = 0; i < 50 && !refused; i++) await store.insert(job(`more-${i}`)).catch((err: unknown) => (refused = err));
    expect(refused, `${(refused as { code?: string }).code} ${(refused as Error).message}`).toBeInstanceOf(StorageUnavailableError);
    expect(((refused as Error).cause as { code: string }).code).toBe('SQLITE_FULL');
    expect((await store.get('kept'))?.id).toBe('kept');

    db.pragma(`max_page_count = ${pages * 100}`);
    await store.insert(job('after'));
    expect((await store.get('after'))?.id).toBe('after');
  });
});

/**
 * A real full disk: DATA_DIR on a small tmpfs, filled with a file. Mounting needs the right to
 * (root in CI's container has it); where it is missing the test says so and is skipped.
 */
function mountSmallDisk(dir: string, sizeKb: number): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const probe = mkdtempSync(path.join(tmpdir(), 'sd-api-mount-'));
const canMount = mountSmallDisk(probe, 64);
if (canMount) execFileSync('umount', [probe]);
rmSync(probe, { recursive: true, force: true });
if (!canMount) console.warn('storage-faults: cannot mount a tmpfs here, so the full-disk server test is skipped');

describe('a server whose database disk fills up', () => {
  it.runIf(canMount)(
    'answers STORAGE_UNAVAILABLE (503, Retry-After) over GraphQL and REST, creating nothing, stays up, and recovers',
    async () => {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'sd-api-full-disk-'));
      expect(mountSmallDisk(dataDir, 16 * 1024)).toBe(true);
      // Held jobs: no result images to write on the full disk while the test looks at job creation.
      const upstream = new FakeImagePipeline();
      upstream.behaviour.hold = true;
      await upstream.start();
      const server = await startTestServer({ dataDir, upstream });
      const filler = path.join(dataDir, 'filler');
      try {
        const { bavail, bsize } = statfsSync(dataDir);
        writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - 64 * 1024)));
        const big = 'x'.repeat(1500);
        let graphql: Response | null = null;
        for (let i = 0; i < 200 && graphql?.status !== 503; i++) {
          graphql = await fetch(`${server.url}/graphql`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'api-key': server.key },
            body: JSON.stringify({ query: print(CreateText2ImageDocument), variables: { input: { prompt: `${big} ${i}` } } }),
          });
        }
        expect(graphql!.status).toBe(503);
        expect(graphql!.headers.get('retry-after')).toBe('30');
        const body = (await graphql!.json()) as { errors: { message: string; extensions: { code: string } }[] };
        expect(body.errors[0]!.extensions.code).toBe('STORAGE_UNAVAILABLE');
        expect(body.errors[0]!.message).toMatch(/storage is full or not writable\); nothing was created/);

        const rest = await fetch(`${server.url}/sd/text2image/v1`, {
          method: 'POST',
          headers: { 'api-key': server.key },
          body: JSON.stringify({ prompt: big }),
        });
        expect(rest.status).toBe(503);
        expect(await rest.json()).toMatchObject({ status: 'FAILURE', code: 'STORAGE_UNAVAILABLE', retry_after: 30 });
        expect((await fetch(`${server.url}/healthz`)).status).toBe(200);

        // Space again: the next job is created without a restart.
        rmSync(filler);
        const after = await server.gql(CreateText2ImageDocument, { input: { prompt: 'room again' } });
        expect(after.errors).toBeUndefined();
      } finally {
        rmSync(filler, { force: true });
        await server.stop({ keepData: true });
        await upstream.stop();
        execFileSync('umount', [dataDir]);
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  );
});
