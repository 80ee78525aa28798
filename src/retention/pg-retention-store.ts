import type { ImageLedger } from '../jobs/image-ledger.js';
import { pgCall, pgTransaction, type PgPool } from '../storage/postgres.js';
import type { ExpiredJob, ImageFate, NotedImage, NotedImageCursor, RetentionStore } from './retention-store.js';

const FINISHED = `('SUCCESS', 'FAILURE', 'CANCELED')`;

/**
 * Retention in PostgreSQL (DATABASE_URL): the image ledger (job_images, migration 2) and the
 * deletes of old jobs, with the same answers as SqliteRetentionStore. Ids and names are bound as
 * text arrays, so each statement's text stays fixed. A server that cannot be reached makes every
 * method reject with StorageUnavailableError.
 */
export class PgRetentionStore implements RetentionStore, ImageLedger {
  constructor(
    private readonly pool: PgPool,
    private readonly clock: () => number = Date.now,
  ) {}

  async record(jobId: string, names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    await pgCall(() =>
      this.pool.query(`INSERT INTO job_images (name, job_id, created_at) SELECT unnest($2::text[]), $1, $3 ON CONFLICT (name) DO NOTHING`, [
        jobId,
        names,
        new Date(this.clock()),
      ]),
    );
  }

  async expiredJobs(cutoff: Date, limit: number): Promise<ExpiredJob[]> {
    const { rows } = await pgCall(() =>
      this.pool.query<{ id: string; images: { name: string }[] }>(
        `SELECT id, images FROM jobs WHERE status IN ${FINISHED} AND finished_at < $1 ORDER BY finished_at LIMIT $2`,
        [cutoff, limit],
      ),
    );
    if (rows.length === 0) return [];
    const notes = await pgCall(() =>
      this.pool.query<{ job_id: string; name: string }>(`SELECT job_id, name FROM job_images WHERE job_id = ANY($1::text[])`, [
        rows.map((r) => r.id),
      ]),
    );
    const noted = new Map<string, string[]>();
    for (const { job_id, name } of notes.rows) noted.set(job_id, [...(noted.get(job_id) ?? []), name]);
    return rows.map((row) => {
      const referenced = row.images.map((i) => i.name);
      return { id: row.id, images: [...new Set([...referenced, ...(noted.get(row.id) ?? [])])] };
    });
  }

  async deleteJobs(ids: readonly string[], cutoff: Date): Promise<number> {
    if (ids.length === 0) return 0;
    return pgTransaction(this.pool, async (client) => {
      // The guard (finished, and before the cutoff) is taken once, with the rows locked: a
      // delivery added meanwhile for one of them waits for this transaction, then finds no job.
      const doomed = await client.query<{ id: string }>(
        `SELECT id FROM jobs WHERE id = ANY($1::text[]) AND status IN ${FINISHED} AND finished_at < $2 FOR UPDATE`,
        [ids, cutoff],
      );
      const doomedIds = doomed.rows.map((r) => r.id);
      if (doomedIds.length === 0) return 0;
      // Deliveries first: they reference their job (a foreign key). All in this one transaction,
      // so the deliverer never sees a finished job without its delivery (it would send it again).
      await client.query(`DELETE FROM webhook_deliveries WHERE job_id = ANY($1::text[])`, [doomedIds]);
      await client.query(`DELETE FROM job_images WHERE job_id = ANY($1::text[])`, [doomedIds]);
      const deleted = await client.query(`DELETE FROM jobs WHERE id = ANY($1::text[])`, [doomedIds]);
      return deleted.rowCount ?? 0;
    });
  }

  async notedImages(writtenBefore: Date, after: NotedImageCursor | null, limit: number): Promise<NotedImage[]> {
    const { rows } = await pgCall(() =>
      this.pool.query<{ name: string; created_at: Date; fate: ImageFate }>(
        `SELECT l.name, l.created_at,
           CASE
             WHEN j.id IS NULL THEN 'orphan'
             WHEN j.status IN ('PENDING', 'PROCESSING') THEN 'pending'
             WHEN j.status = 'SUCCESS'
                  AND EXISTS (SELECT 1 FROM json_array_elements(j.images) AS i WHERE i->>'name' = l.name) THEN 'referenced'
             ELSE 'orphan'
           END AS fate
         FROM job_images l LEFT JOIN jobs j ON j.id = l.job_id
         WHERE l.created_at < $1 AND ($2::timestamptz IS NULL OR (l.created_at, l.name) > ($2::timestamptz, $3::text))
         ORDER BY l.created_at, l.name
         LIMIT $4`,
        [writtenBefore, after?.writtenAt ?? null, after?.name ?? '', limit],
      ),
    );
    return rows.map((r) => ({ name: r.name, writtenAt: r.created_at, fate: r.fate }));
  }

  async forgetImages(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    await pgCall(() => this.pool.query(`DELETE FROM job_images WHERE name = ANY($1::text[])`, [names]));
  }

  /** Every write above commits before it resolves: nothing is queued. */
  async flush(): Promise<void> {}
}
