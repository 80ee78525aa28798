import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The test PostgreSQL: DATABASE_URL (moved to TEST_DATABASE_URL by env-setup.ts), by default the
 * local server with trust auth. Each test file works in a schema of its own, made here and
 * dropped after, so files run in parallel without seeing each other's rows.
 */
export const POSTGRES_URL = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Whether the test PostgreSQL answers; where it does not, outside CI, its tests are skipped. */
export const postgresAvailable: boolean = await (async () => {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
})();

/** Run Postgres tests: always in CI (a missing server fails them), elsewhere when one answers. */
export const runPostgresTests = postgresAvailable || Boolean(process.env.CI);
if (!runPostgresTests) console.warn(`no PostgreSQL answers at ${redact(POSTGRES_URL)}: its tests are skipped`);

/** The URL with this search_path: every connection made from it works in that schema. */
export function urlWithSchema(schema: string, base = POSTGRES_URL): string {
  const url = new URL(base);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return url.toString();
}

export interface TestSchema {
  name: string;
  /** DATABASE_URL for this schema. */
  url: string;
  drop(): Promise<void>;
}

/** A new, empty schema named after the test file (label), with a random suffix. */
export async function createTestSchema(label: string): Promise<TestSchema> {
  const name = `t_${label.toLowerCase().replace(/[^a-z0-9]+/g, '_')}_${randomBytes(4).toString('hex')}`;
  await admin(`CREATE SCHEMA ${name}`);
  return {
    name,
    url: urlWithSchema(name),
    drop: () => admin(`DROP SCHEMA IF EXISTS ${name} CASCADE`),
  };
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable URL)';
  }
}
