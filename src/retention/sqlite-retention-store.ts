import type { ImageLedger } from '../jobs/image-ledger.js';
import type { SqliteDatabase, WalSync } from '../storage/sqlite.js';
import { WriteBatcher } from '../storage/write-batcher.js';
import type { ExpiredJob, ImageFate, NotedImage, NotedImageCursor, RetentionStore } from './retention-store.js';

const FINISHED = `('SUCCESS', 'FAILURE', 'CANCELED')`;

/**
 * Retention in the embedded database: the image ledger (job_images) and the deletes of old
 * jobs. Ids and names are bound as one JSON array, so each statement's text stays fixed.
 */
export class SqliteRetentionStore implements RetentionStore, ImageLedger {
  private readonly writes: WriteBatcher;
  private readonly recordStmt;
  private readonly expiredStmt;
  private readonly notedOfJobsStmt;
  private readonly deleteDeliveriesStmt;
  private readonly deleteNotesOfJobsStmt;
  private readonly deleteJobsStmt;
  private readonly notedStmt;
  private readonly forgetStmt;

  constructor(
    db: SqliteDatabase,
    walSync: WalSync,
    private readonly clock: () => number = Date.now,
  ) {
    this.writes = new WriteBatcher(db, walSync);
    this.recordStmt = db.prepare(
      `INSERT OR IGNORE INTO job_images (name, job_id, created_at) SELECT value, @jobId, @at FROM json_each(@names)`,
    );
    this.expiredStmt = db.prepare<{ cutoff: number; limit: number }, { id: string; images: string }>(
      `SELECT id, images FROM jobs WHERE status IN ${FINISHED} AND finished_at < @cutoff ORDER BY finished_at LIMIT @limit`,
    );
    this.notedOfJobsStmt = db.prepare<[string], { job_id: string; name: string }>(
      `SELECT job_id, name FROM job_images WHERE job_id IN (SELECT value FROM json_each(?))`,
    );
    // The same guard in all three: only jobs that are finished, and finished before the cutoff.
    const doomed = `SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(@ids)) AND status IN ${FINISHED} AND finished_at < @cutoff`;
    this.deleteDeliveriesStmt = db.prepare(`DELETE FROM webhook_deliveries WHERE job_id IN (${doomed})`);
    this.deleteNotesOfJobsStmt = db.prepare(`DELETE FROM job_images WHERE job_id IN (${doomed})`);
    this.deleteJobsStmt = db.prepare(`DELETE FROM jobs WHERE id IN (${doomed})`);
    this.notedStmt = db.prepare<
      { before: number; afterAt: number; afterName: string; limit: number },
      { name: string; created_at: number; fate: ImageFate }
    >(
      `SELECT l.name, l.created_at,
         CASE
           WHEN j.id IS NULL THEN 'orphan'
           WHEN j.status IN ('PENDING', 'PROCESSING') THEN 'pending'
           WHEN j.status = 'SUCCESS'
                AND EXISTS (SELECT 1 FROM json_each(j.images) AS i WHERE json_extract(i.value, '$.name') = l.name) THEN 'referenced'
           ELSE 'orphan'
         END AS fate
       FROM job_images l LEFT JOIN jobs j ON j.id = l.job_id
       WHERE l.created_at < @before AND (l.created_at > @afterAt OR (l.created_at = @afterAt AND l.name > @afterName))
       ORDER BY l.created_at, l.name
       LIMIT @limit`,
    );
    this.forgetStmt = db.prepare(`DELETE FROM job_images WHERE name IN (SELECT value FROM json_each(?))`);
  }

  async record(jobId: string, names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    await this.writes.run(() => this.recordStmt.run({ jobId, names: JSON.stringify(names), at: this.clock() }));
  }

  async expiredJobs(cutoff: Date, limit: number): Promise<ExpiredJob[]> {
    const rows = this.expiredStmt.all({ cutoff: cutoff.getTime(), limit });
    if (rows.length === 0) return [];
    const noted = new Map<string, string[]>();
    for (const { job_id, name } of this.notedOfJobsStmt.all(JSON.stringify(rows.map((r) => r.id)))) {
      noted.set(job_id, [...(noted.get(job_id) ?? []), name]);
    }
    return rows.map((row) => {
      const referenced = (JSON.parse(row.images) as { name: string }[]).map((i) => i.name);
      return { id: row.id, images: [...new Set([...referenced, ...(noted.get(row.id) ?? [])])] };
    });
  }

  async deleteJobs(ids: readonly string[], cutoff: Date): Promise<number> {
    if (ids.length === 0) return 0;
    const params = { ids: JSON.stringify(ids), cutoff: cutoff.getTime() };
    return this.writes.run(() => {
      // Deliveries first: they reference their job. One transaction, so the deliverer never
      // sees a finished job without its delivery (it would send the webhook again).
      this.deleteDeliveriesStmt.run(params);
      this.deleteNotesOfJobsStmt.run(params);
      return this.deleteJobsStmt.run(params).changes;
    });
  }

  async notedImages(writtenBefore: Date, after: NotedImageCursor | null, limit: number): Promise<NotedImage[]> {
    const rows = this.notedStmt.all({
      before: writtenBefore.getTime(),
      afterAt: after ? after.writtenAt.getTime() : -1,
      afterName: after?.name ?? '',
      limit,
    });
    return rows.map((r) => ({ name: r.name, writtenAt: new Date(r.created_at), fate: r.fate }));
  }

  async forgetImages(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    await this.writes.run(() => this.forgetStmt.run(JSON.stringify(names)));
  }

  /** Commits queued writes now (before the database closes). */
  flush(): Promise<void> {
    return this.writes.flush();
  }
}
