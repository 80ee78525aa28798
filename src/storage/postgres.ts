import pg from 'pg';
import { isConnectionFault, StorageUnavailableError } from './storage-fault.js';

export type PgPool = pg.Pool;
export type PgClient = pg.PoolClient;

/** How long taking a connection may wait (a new one, or a free one of a full pool) before it fails. */
export const PG_CONNECT_TIMEOUT_MS = 5_000;
/** Client-side limit per query: a server that stops answering fails the query instead of hanging it. */
export const PG_QUERY_TIMEOUT_MS = 30_000;
/** Connections per process unless the caller says (DATABASE_POOL_SIZE). */
const PG_POOL_SIZE = 10;

/**
 * A connection pool for DATABASE_URL. A connection that breaks (the server restarted, the network
 * dropped) is discarded and the next query opens a new one, so the stores recover by themselves;
 * errors of idle connections are reported to onError instead of crashing the process. Every
 * connection uses the search_path of the URL (options=-c search_path=...), if it names one.
 */
export function createPgPool(url: string, onError: (err: Error) => void = () => {}, size = PG_POOL_SIZE): PgPool {
  const pool = new pg.Pool({
    connectionString: url,
    max: size,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    query_timeout: PG_QUERY_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'sd15-graphql-api',
  });
  pool.on('error', onError);
  return pool;
}

/** Runs a store operation, turning a lost or refused connection into StorageUnavailableError. */
export async function pgCall<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (err) {
    if (isConnectionFault(err)) throw new StorageUnavailableError({ cause: err, reason: 'unreachable' });
    throw err;
  }
}

/**
 * One transaction on one connection: committed when work resolves, rolled back when it throws.
 * A connection whose transaction failed for a connection fault is discarded, not reused.
 */
export async function pgTransaction<T>(pool: PgPool, work: (client: PgClient) => Promise<T>): Promise<T> {
  return pgCall(async () => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (isConnectionFault(err)) broken = err as Error;
      else await client.query('ROLLBACK').catch((rollbackErr: unknown) => (broken = rollbackErr as Error));
      throw err;
    } finally {
      client.release(broken);
    }
  });
}

/**
 * Schema migrations, applied in order, each in its own transaction; schema_migrations records
 * the versions applied. Append only: a migration that has shipped is never edited. The schema is
 * the SQLite one's (storage/sqlite.ts) as it stands after its migrations, in Postgres's types:
 * times are timestamptz, the JSON columns json (kept as written, key order included).
 */
const MIGRATIONS: string[] = [
  `CREATE TABLE api_keys (
     id              TEXT PRIMARY KEY,
     name            TEXT NOT NULL,
     key_hash        TEXT NOT NULL UNIQUE,
     key_prefix      TEXT NOT NULL,
     scopes          JSON NOT NULL,
     created_at      TIMESTAMPTZ NOT NULL,
     revoked_at      TIMESTAMPTZ,
     webhook_secret  TEXT
   );
   CREATE TABLE jobs (
     seq                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     id                    TEXT NOT NULL UNIQUE,
     owner_id              TEXT NOT NULL REFERENCES api_keys(id),
     mode                  TEXT NOT NULL,
     status                TEXT NOT NULL CHECK (status IN ('PENDING', 'PROCESSING', 'SUCCESS', 'FAILURE', 'CANCELED')),
     params                JSON NOT NULL,
     engine                TEXT NOT NULL,
     engine_handle         TEXT,
     progress_step         INTEGER,
     progress_total        INTEGER,
     engine_queue_position INTEGER,
     requeues              INTEGER NOT NULL DEFAULT 0,
     images                JSON NOT NULL DEFAULT '[]',
     error_code            TEXT,
     error_message         TEXT,
     version               INTEGER NOT NULL DEFAULT 1,
     created_at            TIMESTAMPTZ NOT NULL,
     started_at            TIMESTAMPTZ,
     finished_at           TIMESTAMPTZ,
     idempotency_key       TEXT,
     request_fingerprint   TEXT,
     webhook_url           TEXT
   );
   CREATE INDEX jobs_by_owner ON jobs (owner_id, seq DESC);
   CREATE INDEX jobs_active ON jobs (seq) WHERE status IN ('PENDING', 'PROCESSING');
   CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
   CREATE INDEX jobs_with_webhook ON jobs (status) WHERE webhook_url IS NOT NULL;
   CREATE TABLE webhook_deliveries (
     id               TEXT PRIMARY KEY,
     job_id           TEXT NOT NULL UNIQUE REFERENCES jobs(id),
     owner_id         TEXT NOT NULL,
     url              TEXT NOT NULL,
     body             TEXT NOT NULL,
     status           TEXT NOT NULL,
     attempts         INTEGER NOT NULL DEFAULT 0,
     next_attempt_at  TIMESTAMPTZ NOT NULL,
     last_error       TEXT,
     created_at       TIMESTAMPTZ NOT NULL,
     delivered_at     TIMESTAMPTZ
   );
   CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';`,
  // Retention (as SQLite's last migration): finished jobs by their end, and every image written for a job
  // (noted before the job commits SUCCESS), so images no finished job references can be found and
  // removed. No foreign key to jobs: a note may outlive its job until the sweep settles it.
  `CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('SUCCESS', 'FAILURE', 'CANCELED');
   CREATE TABLE job_images (
     name        TEXT PRIMARY KEY,
     job_id      TEXT NOT NULL,
     created_at  TIMESTAMPTZ NOT NULL
   );
   CREATE INDEX job_images_by_job ON job_images (job_id);
   CREATE INDEX job_images_by_age ON job_images (created_at, name);`,
  // Keys listed in the order they were made: two made in the same millisecond share created_at,
  // and their ids are random. Existing rows are numbered in the table's physical order.
  `ALTER TABLE api_keys ADD COLUMN seq BIGSERIAL;`,
];

/** The latest schema version this code knows. */
export const PG_SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings the schema of the pool's search_path up to date. Safe when several processes start at
 * once: they queue on an advisory lock (one per schema), and each applies only the versions
 * still missing when it gets the lock. A crash mid-migration rolls that migration back and frees
 * the lock with the connection. Refuses a schema newer than this code.
 */
export async function migratePostgres(pool: PgPool, migrations: readonly string[] = MIGRATIONS): Promise<{ applied: number[] }> {
  return pgCall(async () => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      const { rows } = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema');
      const schema = rows[0]?.schema;
      if (!schema) throw new Error('DATABASE_URL: no schema of its search_path exists, so there is nowhere to create the tables');
      await client.query(`SELECT pg_advisory_lock(hashtextextended('sd15-graphql-api migrations ' || $1, 0))`, [schema]);
      try {
        await client.query(
          `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
        );
        const done = await client.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
        const applied = new Set(done.rows.map((r) => r.version));
        const newest = Math.max(0, ...applied);
        if (newest > migrations.length) {
          throw new Error(`the database is at schema version ${newest}, newer than this server (${migrations.length})`);
        }
        const now: number[] = [];
        for (let v = 1; v <= migrations.length; v++) {
          if (applied.has(v)) continue;
          await client.query('BEGIN');
          try {
            await client.query(migrations[v - 1]!);
            await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [v]);
            await client.query('COMMIT');
          } catch (err) {
            await client.query('ROLLBACK').catch(() => {});
            throw err;
          }
          now.push(v);
        }
        return { applied: now };
      } finally {
        // A connection that cannot unlock is discarded, which frees the lock with it.
        await client
          .query(`SELECT pg_advisory_unlock(hashtextextended('sd15-graphql-api migrations ' || $1, 0))`, [schema])
          .catch((err: unknown) => (broken = err as Error));
      }
    } catch (err) {
      if (isConnectionFault(err)) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  });
}
