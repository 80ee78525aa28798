import type { SqliteDatabase, WalSync } from './sqlite.js';

interface QueuedWrite {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for SQLite. Writes queued during one turn of the event loop run together in one
 * transaction, then one fdatasync (in the thread pool) makes the batch durable; each caller's
 * promise resolves only after that, so "answered" always means "on disk". Each write runs in its
 * own savepoint, so one failing write (a constraint, say) fails alone; a failed commit or sync
 * (disk full, I/O error) fails them all.
 */
export class WriteBatcher {
  private queue: QueuedWrite[] = [];

  constructor(
    private readonly db: SqliteDatabase,
    private readonly walSync: WalSync,
  ) {}

  run<T>(write: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run: write, resolve: resolve as (v: unknown) => void, reject });
      if (this.queue.length === 1) setImmediate(() => void this.flush());
    });
  }

  /** Commits whatever is queued now; called on shutdown before the database closes. */
  flush(): Promise<void> {
    const batch = this.queue;
    if (batch.length === 0) return Promise.resolve();
    this.queue = [];
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.db.transaction(() => {
        for (const write of batch) {
          try {
            // A transaction inside a transaction is a savepoint in better-sqlite3.
            outcomes.push({ ok: true, value: this.db.transaction(write.run)() });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      })();
    } catch (error) {
      // Some failures (SQLITE_FULL, I/O errors) make SQLite roll back the whole transaction, and
      // the commit then fails with "no transaction is active": report the write's own error.
      const cause = outcomes.find((o) => !o.ok)?.error ?? error;
      for (const write of batch) write.reject(cause);
      return Promise.resolve();
    }
    return this.walSync.sync().then(
      () =>
        batch.forEach((write, i) => {
          const outcome = outcomes[i]!;
          if (outcome.ok) write.resolve(outcome.value);
          else write.reject(outcome.error);
        }),
      (error: unknown) => batch.forEach((write) => write.reject(error)),
    );
  }
}
