import type { SqliteDatabase } from '../storage/sqlite.js';
import type { WriteBatcher } from '../storage/write-batcher.js';

/** One webhook call to make for one finished job, with its retry state. */
export interface WebhookDelivery {
  id: string;
  jobId: string;
  ownerId: string;
  url: string;
  body: string;
  attempts: number;
  nextAttemptAt: number;
}

/**
 * Stored webhook deliveries, so retries survive restarts: SqliteWebhookStore here,
 * PgWebhookStore (pg-webhook-store.ts) with DATABASE_URL. A job has at most one delivery.
 */
export interface WebhookStore {
  /** Persists a delivery (durable before this resolves); a second one for a job is ignored. */
  add(delivery: Omit<WebhookDelivery, 'attempts'>): Promise<void>;
  /**
   * At most limit pending deliveries due by now, earliest first, leaving out the ones this
   * process is attempting (inFlight). A store shared by several processes claims the ones it
   * returns for a while, so that only one process attempts each.
   */
  due(now: number, limit: number, inFlight?: ReadonlySet<string>): Promise<WebhookDelivery[]>;
  /** When the earliest pending delivery is due, if any. */
  nextDueAt(): Promise<number | null>;
  delivered(d: WebhookDelivery, attempts: number): Promise<void>;
  retryLater(d: WebhookDelivery, attempts: number, nextAttemptAt: number, error: string): Promise<void>;
  gaveUp(d: WebhookDelivery, attempts: number, error: string): Promise<void>;
  /** Finished jobs that asked for a webhook but have no delivery (the process died in between). */
  jobsMissingDelivery(): Promise<string[]>;
}

interface DeliveryRow {
  id: string;
  job_id: string;
  owner_id: string;
  url: string;
  body: string;
  attempts: number;
  next_attempt_at: number;
}

const fromRow = (r: DeliveryRow): WebhookDelivery => ({
  id: r.id,
  jobId: r.job_id,
  ownerId: r.owner_id,
  url: r.url,
  body: r.body,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
});

/**
 * Webhook deliveries in SQLite, so retries survive restarts. A job has at most one delivery
 * (job_id is unique), so finishing twice can never notify twice.
 */
export class SqliteWebhookStore implements WebhookStore {
  private readonly insertStmt;
  private readonly dueStmt;
  private readonly updateStmt;
  private readonly missingStmt;
  private readonly nextDueStmt;

  constructor(
    db: SqliteDatabase,
    private readonly writes: WriteBatcher,
  ) {
    this.insertStmt = db.prepare(
      `INSERT OR IGNORE INTO webhook_deliveries (id, job_id, owner_id, url, body, status, attempts, next_attempt_at, created_at)
       VALUES (@id, @jobId, @ownerId, @url, @body, 'PENDING', 0, @nextAttemptAt, @createdAt)`,
    );
    this.dueStmt = db.prepare<[number, number], DeliveryRow>(
      `SELECT * FROM webhook_deliveries WHERE status = 'PENDING' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?`,
    );
    this.updateStmt = db.prepare(
      `UPDATE webhook_deliveries SET status = @status, attempts = @attempts, next_attempt_at = @nextAttemptAt,
         last_error = @lastError, delivered_at = @deliveredAt WHERE id = @id`,
    );
    this.nextDueStmt = db.prepare<[], { at: number | null }>(
      `SELECT MIN(next_attempt_at) AS at FROM webhook_deliveries WHERE status = 'PENDING'`,
    );
    // Finished jobs that asked for a webhook but have no delivery: the process died in between.
    this.missingStmt = db.prepare<[], { id: string }>(
      `SELECT j.id FROM jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id
       WHERE j.webhook_url IS NOT NULL AND j.status IN ('SUCCESS', 'FAILURE', 'CANCELED') AND d.id IS NULL`,
    );
  }

  async add(delivery: Omit<WebhookDelivery, 'attempts'>): Promise<void> {
    await this.writes.run(() => this.insertStmt.run({ ...delivery, createdAt: Date.now() }));
  }

  async due(now: number, limit: number, inFlight: ReadonlySet<string> = new Set()): Promise<WebhookDelivery[]> {
    return this.dueStmt
      .all(now, limit + inFlight.size)
      .map(fromRow)
      .filter((d) => !inFlight.has(d.id))
      .slice(0, limit);
  }

  async nextDueAt(): Promise<number | null> {
    return this.nextDueStmt.get()?.at ?? null;
  }

  async delivered(d: WebhookDelivery, attempts: number): Promise<void> {
    await this.update(d, { status: 'DELIVERED', attempts, nextAttemptAt: d.nextAttemptAt, lastError: null, deliveredAt: Date.now() });
  }

  async retryLater(d: WebhookDelivery, attempts: number, nextAttemptAt: number, error: string): Promise<void> {
    await this.update(d, { status: 'PENDING', attempts, nextAttemptAt, lastError: error, deliveredAt: null });
  }

  async gaveUp(d: WebhookDelivery, attempts: number, error: string): Promise<void> {
    await this.update(d, { status: 'FAILED', attempts, nextAttemptAt: d.nextAttemptAt, lastError: error, deliveredAt: null });
  }

  async jobsMissingDelivery(): Promise<string[]> {
    return this.missingStmt.all().map((r) => r.id);
  }

  private async update(
    d: WebhookDelivery,
    v: { status: string; attempts: number; nextAttemptAt: number; lastError: string | null; deliveredAt: number | null },
  ): Promise<void> {
    await this.writes.run(() => this.updateStmt.run({ id: d.id, ...v }));
  }
}
