import { closeSync, fdatasync, fdatasyncSync, mkdirSync, openSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import Database from 'better-sqlite3';

export type SqliteDatabase = Database.Database;

/**
 * Schema migrations, applied in order; PRAGMA user_version records how many have run.
 * Append only: a migration that has shipped is never edited.
 */
const MIGRATIONS: string[] = [
  `CREATE TABLE api_keys (
     id          TEXT PRIMARY KEY,
     name        TEXT NOT NULL,
     key_hash    TEXT NOT NULL UNIQUE,
     key_prefix  TEXT NOT NULL,
     scopes      TEXT NOT NULL,
     created_at  INTEGER NOT NULL,
     revoked_at  INTEGER
   );
   CREATE TABLE jobs (
     seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
     id                    TEXT NOT NULL UNIQUE,
     owner_id              TEXT NOT NULL REFERENCES api_keys(id),
     mode                  TEXT NOT NULL,
     status                TEXT NOT NULL,
     params                TEXT NOT NULL,
     engine                TEXT NOT NULL,
     engine_handle         TEXT,
     progress_step         INTEGER,
     progress_total        INTEGER,
     engine_queue_position INTEGER,
     images                TEXT NOT NULL DEFAULT '[]',
     error_code            TEXT,
     error_message         TEXT,
     version               INTEGER NOT NULL DEFAULT 1,
     created_at            INTEGER NOT NULL,
     started_at            INTEGER,
     finished_at           INTEGER
   );
   CREATE INDEX jobs_by_owner ON jobs (owner_id, seq DESC);
   CREATE INDEX jobs_active ON jobs (status, seq) WHERE status IN ('PENDING', 'PROCESSING');`,
  // Gateways: how often a job was moved off a worker that stopped answering (bounded).
  `ALTER TABLE jobs ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0;`,
  // Idempotency-Key: one job per (key, client's idempotency key); the fingerprint spots reuse.
  `ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
   ALTER TABLE jobs ADD COLUMN request_fingerprint TEXT;
   CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;`,
  // Webhooks: the URL a job notifies, each key's signing secret, and the deliveries with their retries.
  `ALTER TABLE jobs ADD COLUMN webhook_url TEXT;
   ALTER TABLE api_keys ADD COLUMN webhook_secret TEXT;
   CREATE TABLE webhook_deliveries (
     id               TEXT PRIMARY KEY,
     job_id           TEXT NOT NULL UNIQUE REFERENCES jobs(id),
     owner_id         TEXT NOT NULL,
     url              TEXT NOT NULL,
     body             TEXT NOT NULL,
     status           TEXT NOT NULL,
     attempts         INTEGER NOT NULL DEFAULT 0,
     next_attempt_at  INTEGER NOT NULL,
     last_error       TEXT,
     created_at       INTEGER NOT NULL,
     delivered_at     INTEGER
   );
   CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
   CREATE INDEX jobs_with_webhook ON jobs (status) WHERE webhook_url IS NOT NULL;`,
  // Retention: finished jobs by their end, and every image written for a job (noted before the job
  // commits SUCCESS), so images no finished job references can be found and removed.
  `CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('SUCCESS', 'FAILURE', 'CANCELED');
   CREATE TABLE job_images (
     name        TEXT PRIMARY KEY,
     job_id      TEXT NOT NULL,
     created_at  INTEGER NOT NULL
   );
   CREATE INDEX job_images_by_job ON job_images (job_id);
   CREATE INDEX job_images_by_age ON job_images (created_at);`,
];

/**
 * Opens the database in WAL mode with synchronous=NORMAL: SQLite itself does not fsync on
 * commit. Durability is WalSync's job below, so that the fsync of a commit can happen off the
 * event loop (and once for a whole batch of commits) instead of blocking it.
 */
export function openDatabase(file: string): SqliteDatabase {
  mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  // The keys command may write while the server runs: wait for the lock instead of failing.
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  migrate(db);
  return db;
}

function migrate(db: SqliteDatabase): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`the database is at schema version ${current}, newer than this server (${MIGRATIONS.length})`);
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

const fdatasyncAsync = promisify(fdatasync);

/**
 * Makes committed transactions durable by fdatasync-ing the WAL file: in WAL mode a commit is
 * the WAL frames, so once they are on disk the commit survives power loss (what
 * synchronous=FULL would do, but in libuv's thread pool rather than on the event loop).
 * Disabled (SQLITE_SYNCHRONOUS=NORMAL), commits survive process crashes but not power loss.
 */
export class WalSync {
  private fd: number | null = null;
  private readonly walPath: string;
  /** The fdatasync running now, and the one queued to follow it (shared by all who wait). */
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  constructor(
    databaseFile: string,
    readonly enabled: boolean,
  ) {
    this.walPath = `${databaseFile}-wal`;
  }

  /**
   * Flushes every commit made so far to disk, without blocking the event loop. While one sync
   * runs, callers share a single follow-up sync (it may have started before their commit), so
   * under load one fdatasync covers many batches.
   */
  sync(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (!this.running) {
      this.running = fdatasyncAsync(this.handle()).finally(() => (this.running = null));
      return this.running;
    }
    this.next ??= this.running.then(
      () => this.startNext(),
      () => this.startNext(),
    );
    return this.next;
  }

  private startNext(): Promise<void> {
    this.next = null;
    return this.sync();
  }

  /** The same, blocking: for rare writes outside the request path (keys). */
  syncNow(): void {
    if (this.enabled) fdatasyncSync(this.handle());
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  /** One descriptor for the life of the process: fsync on any descriptor flushes the file. */
  private handle(): number {
    this.fd ??= openSync(this.walPath, 'r');
    return this.fd;
  }
}
