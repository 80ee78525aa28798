import path from 'node:path';
import { SqliteKeyStore, type KeyStore } from './auth/key-store.js';
import { PgKeyStore } from './auth/pg-key-store.js';
import type { Config } from './config.js';
import type { ImageLedger } from './jobs/image-ledger.js';
import { SqliteJobStore, type JobStore } from './jobs/job-store.js';
import { PgJobStore } from './jobs/pg-job-store.js';
import type { Logger } from './logger.js';
import { PgRetentionStore } from './retention/pg-retention-store.js';
import { PgSweepLock } from './retention/pg-sweep-lock.js';
import type { RetentionStore } from './retention/retention-store.js';
import { InProcessLock, type SweepLock } from './retention/sweep-lock.js';
import { SqliteRetentionStore } from './retention/sqlite-retention-store.js';
import { createPgPool, migratePostgres } from './storage/postgres.js';
import { openDatabase, WalSync } from './storage/sqlite.js';
import { WriteBatcher } from './storage/write-batcher.js';
import { PgWebhookStore } from './webhooks/pg-webhook-store.js';
import { SqliteWebhookStore, type WebhookStore } from './webhooks/webhook-store.js';

/** Where jobs, keys, webhook deliveries and the image ledger live: SQLite in DATA_DIR, or Postgres with DATABASE_URL. */
export interface Stores {
  keys: KeyStore;
  jobs: JobStore;
  webhooks: WebhookStore;
  /** What the retention sweep deletes, and the notes of images written for a job (JobUpdater's ledger). */
  retention: RetentionStore & ImageLedger;
  /** Keeps the sweep to one process at a time: in this process for SQLite, across processes for Postgres. */
  sweepLock: SweepLock;
  /** Makes every answered write durable and closes the database (or its pool). */
  close(): Promise<void>;
}

export async function openStores(config: Config, logger: Logger, clock: () => number): Promise<Stores> {
  if (config.databaseUrl) {
    const pool = createPgPool(
      config.databaseUrl,
      (err) => logger.warn({ err }, 'a Postgres connection failed; the next query opens a new one'),
      config.databasePoolSize,
    );
    try {
      const { applied } = await migratePostgres(pool);
      logger.info({ database: 'postgres', migrationsApplied: applied }, 'database ready');
    } catch (err) {
      await pool.end();
      throw err;
    }
    return {
      keys: new PgKeyStore(pool),
      jobs: new PgJobStore(pool),
      // A claimed delivery is left to its process for two attempts' time limits and a margin.
      webhooks: new PgWebhookStore(pool, 2 * config.webhooks.timeoutMs + 30_000),
      retention: new PgRetentionStore(pool, clock),
      sweepLock: new PgSweepLock(pool),
      close: () => pool.end(),
    };
  }
  const dbFile = path.join(config.dataDir, 'sd-api.sqlite');
  const db = openDatabase(dbFile);
  const walSync = new WalSync(dbFile, config.sqliteSynchronous === 'FULL');
  const jobs = new SqliteJobStore(db, walSync);
  const retention = new SqliteRetentionStore(db, walSync, clock);
  return {
    keys: new SqliteKeyStore(db, walSync),
    jobs,
    webhooks: new SqliteWebhookStore(db, new WriteBatcher(db, walSync)),
    retention,
    // A lock in this process is enough: the sweep runs only in API processes, and SQLite is the
    // record of one machine. Without REDIS_URL one server process owns the file; with REDIS_URL
    // and SQLite, API processes and workers share the file on one machine, and two API
    // processes sweeping at once delete the same expired rows and images twice, which is
    // harmless (deletes of what is gone do nothing). Several machines need DATABASE_URL, where
    // PgSweepLock keeps the sweep to one process of all.
    sweepLock: new InProcessLock(),
    async close() {
      await Promise.all([jobs.flush(), retention.flush()]);
      db.pragma('wal_checkpoint(TRUNCATE)');
      walSync.close();
      db.close();
    },
  };
}
