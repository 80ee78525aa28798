import { mkdirSync } from 'node:fs';
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
];

export interface OpenOptions {
  /** FULL survives power loss; NORMAL (with WAL) survives process crashes only. */
  synchronous: 'FULL' | 'NORMAL';
}

export function openDatabase(file: string, options: OpenOptions): SqliteDatabase {
  mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${options.synchronous}`);
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
