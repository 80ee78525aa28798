import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Text2ImageDocument } from '../src/client/generated/graphql.js';
import { createReadiness } from '../src/http/health.js';
import { SqliteJobStore } from '../src/jobs/job-store.js';
import { createLogger } from '../src/logger.js';
import { openDatabase, WalSync } from '../src/storage/sqlite.js';
import { startTestServer, type TestServer } from './helpers/test-server.js';

const readyz = async (server: TestServer) => {
  const res = await fetch(`${server.url}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

describe('GET /healthz and GET /readyz', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.stop());

  it('/healthz answers 200 while the server runs; /readyz lists its checks', async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    expect(await readyz(server)).toEqual({
      status: 200,
      body: { status: 'ready', checks: { database: { status: 'ok' }, images: { status: 'ok' } } },
    });
  });

  it('/readyz answers 503 naming the image store while its folder cannot be written, and recovers', async () => {
    const dir = path.join(server.dataDir, 'images');
    const aside = `${dir}-aside`;
    renameSync(dir, aside);
    writeFileSync(dir, 'not a folder'); // root ignores permission bits, so a file stands in the folder's place
    try {
      const broken = await readyz(server);
      expect(broken.status).toBe(503);
      expect(broken.body).toEqual({
        status: 'unavailable',
        failing: ['images'],
        checks: { database: { status: 'ok' }, images: { status: 'failed', error: 'ENOTDIR' } },
      });
      // Liveness is not readiness: the process still serves.
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    } finally {
      rmSync(dir);
      renameSync(aside, dir);
    }
    expect((await readyz(server)).status).toBe(200);
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'still works' } });
    expect(created.errors).toBeUndefined();
  });
});

describe('readiness checks', () => {
  const logger = createLogger('silent');

  it('a closed job store fails its ping, and the check names it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sd-readyz-'));
    const file = path.join(dir, 'db.sqlite');
    const db = openDatabase(file);
    const walSync = new WalSync(file, false);
    const store = new SqliteJobStore(db, walSync);
    const readiness = createReadiness({ database: () => store.ping() }, logger);
    expect(await readiness.check()).toEqual({ ready: true, checks: { database: { status: 'ok' } } });
    db.close();
    await expect(store.ping()).rejects.toThrow(/closed/);
    expect(await readiness.check()).toEqual({ ready: false, checks: { database: { status: 'failed', error: 'DATABASE_CLOSED' } } });
    rmSync(dir, { recursive: true, force: true });
  });

  it('a check that does not answer in time fails as timed out; a stopping process is not ready', async () => {
    const readiness = createReadiness({ redis: () => new Promise(() => {}), fine: async () => {} }, logger, 50);
    expect(await readiness.check()).toEqual({
      ready: false,
      checks: { redis: { status: 'failed', error: 'timed out' }, fine: { status: 'ok' } },
    });
    const other = createReadiness({ fine: async () => {} }, logger);
    other.stopping();
    expect(await other.check()).toEqual({
      ready: false,
      checks: { fine: { status: 'ok' }, server: { status: 'failed', error: 'shutting down' } },
    });
  });
});
