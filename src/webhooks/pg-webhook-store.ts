import type { QueryResultRow } from 'pg';
import { pgCall, type PgPool } from '../storage/postgres.js';
import type { WebhookDelivery, WebhookStore } from './webhook-store.js';

interface DeliveryRow {
  id: string;
  job_id: string;
  owner_id: string;
  url: string;
  body: string;
  attempts: number;
  /** When it was due before this claim (what the delivery reports as its nextAttemptAt). */
  due_at: Date;
}

const fromRow = (r: DeliveryRow): WebhookDelivery => ({
  id: r.id,
  jobId: r.job_id,
  ownerId: r.owner_id,
  url: r.url,
  body: r.body,
  attempts: r.attempts,
  nextAttemptAt: r.due_at.getTime(),
});

/**
 * Webhook deliveries in PostgreSQL (DATABASE_URL), shared by every process. due() claims the
 * deliveries it returns (FOR UPDATE SKIP LOCKED, then their next attempt moved claimMs ahead),
 * so two processes never attempt the same one at once; a process that dies mid-attempt leaves
 * the claim to run out, and another retries it then. job_id is unique, so a job that two
 * processes see finish (or one finishing while another repairs missing deliveries at start)
 * still gets one delivery.
 */
export class PgWebhookStore implements WebhookStore {
  constructor(
    private readonly pool: PgPool,
    /** How long a claimed delivery is left to its process: longer than one attempt can take. */
    private readonly claimMs: number,
  ) {}

  async add(delivery: Omit<WebhookDelivery, 'attempts'>): Promise<void> {
    await this.query(
      `INSERT INTO webhook_deliveries (id, job_id, owner_id, url, body, status, attempts, next_attempt_at, created_at)
       VALUES ($1, $2, $3, $4, $5, 'PENDING', 0, $6, $7)
       ON CONFLICT (job_id) DO NOTHING`,
      [delivery.id, delivery.jobId, delivery.ownerId, delivery.url, delivery.body, new Date(delivery.nextAttemptAt), new Date()],
    );
  }

  /** What this process attempts now is claimed, so never due here: inFlight needs no look. */
  async due(now: number, limit: number): Promise<WebhookDelivery[]> {
    const rows = await this.query<DeliveryRow>(
      `WITH due AS (
         SELECT id, next_attempt_at FROM webhook_deliveries
         WHERE status = 'PENDING' AND next_attempt_at <= $1
         ORDER BY next_attempt_at LIMIT $2
         FOR UPDATE SKIP LOCKED
       )
       UPDATE webhook_deliveries d SET next_attempt_at = $3
       FROM due WHERE d.id = due.id
       RETURNING d.id, d.job_id, d.owner_id, d.url, d.body, d.attempts, due.next_attempt_at AS due_at`,
      [new Date(now), limit, new Date(now + this.claimMs)],
    );
    return rows.map(fromRow).sort((a, b) => a.nextAttemptAt - b.nextAttemptAt);
  }

  async nextDueAt(): Promise<number | null> {
    const rows = await this.query<{ at: Date | null }>(
      `SELECT MIN(next_attempt_at) AS at FROM webhook_deliveries WHERE status = 'PENDING'`,
    );
    return rows[0]?.at?.getTime() ?? null;
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
    const rows = await this.query<{ id: string }>(
      `SELECT j.id FROM jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id
       WHERE j.webhook_url IS NOT NULL AND j.status IN ('SUCCESS', 'FAILURE', 'CANCELED') AND d.id IS NULL`,
    );
    return rows.map((r) => r.id);
  }

  private async update(
    d: WebhookDelivery,
    v: { status: string; attempts: number; nextAttemptAt: number; lastError: string | null; deliveredAt: number | null },
  ): Promise<void> {
    await this.query(
      `UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at = $4, last_error = $5, delivered_at = $6
       WHERE id = $1`,
      [d.id, v.status, v.attempts, new Date(v.nextAttemptAt), v.lastError, v.deliveredAt === null ? null : new Date(v.deliveredAt)],
    );
  }

  private async query<R extends QueryResultRow = QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return (await pgCall(() => this.pool.query<R>(sql, params))).rows;
  }
}
