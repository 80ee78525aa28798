import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ImageStore } from '../images/image-store.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { NotedImageCursor, RetentionStore } from './retention-store.js';
import type { SweepLock } from './sweep-lock.js';

export interface RetentionOptions {
  /** Finished jobs older than this (by their end) are deleted; 0 keeps every job (orphan images still go). */
  maxAgeMs: number;
  sweepIntervalMs: number;
  /** Wait before the first sweep after start (capped at the interval). */
  firstSweepDelayMs?: number;
  /** Jobs or images per batch: one transaction each, the event loop free between them. */
  batchSize?: number;
  /**
   * Images younger than this are left to the next sweep, even when their job already ended
   * without them: a margin for clocks of different processes (an image's note and its job's
   * end are stamped by whichever process wrote them).
   */
  orphanGraceMs?: number;
}

export interface SweepReport {
  /** Another sweep held the lock (here or in another process): nothing was done. */
  skipped: boolean;
  jobsDeleted: number;
  /** Images of the deleted jobs. */
  imagesDeleted: number;
  /** Images written for jobs that never committed them. */
  orphansDeleted: number;
  ms: number;
}

const LOCK_NAME = 'sd-retention-sweep';
const DEFAULT_FIRST_SWEEP_DELAY_MS = 60_000;
const DEFAULT_BATCH = 200;
const DEFAULT_ORPHAN_GRACE_MS = 10 * 60_000;
/** Image deletions in flight at once (the local folder's rm, or an object store's DELETE). */
const DELETE_CONCURRENCY = 8;

/**
 * Deletes what JOB_RETENTION no longer keeps, periodically, on one process at a time (the
 * SweepLock): finished jobs that ended before now - maxAge with their images and webhook
 * deliveries, and images written for jobs that never committed them (FAILURE, CANCELED, or a
 * crash between writing and committing). Works in batches with the event loop free between
 * them, so a large backlog does not stall requests.
 *
 * Safe by construction: the store deletes only jobs that are finished and ended before the
 * cutoff (whatever this passes), and an image is removed only when it belongs to such a job or
 * its note says no job will ever reference it; an unfinished job's images are never touched.
 * A job's images go before its record: a crash in between leaves a record whose images are gone
 * (deleted again next time), never images that nothing points to.
 */
export class RetentionSweeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<SweepReport> | null = null;
  private stopped = false;
  private readonly batchSize: number;
  private readonly orphanGraceMs: number;

  constructor(
    private readonly deps: {
      store: RetentionStore;
      images: ImageStore;
      lock: SweepLock;
      logger: Logger;
      metrics?: Metrics;
      clock?: () => number;
    },
    private readonly options: RetentionOptions,
  ) {
    this.batchSize = options.batchSize ?? DEFAULT_BATCH;
    this.orphanGraceMs = options.orphanGraceMs ?? DEFAULT_ORPHAN_GRACE_MS;
  }

  private now(): number {
    return (this.deps.clock ?? Date.now)();
  }

  /** Schedules the sweeps: the first shortly after start, then every interval. */
  start(): void {
    this.stopped = false;
    this.schedule(Math.min(this.options.firstSweepDelayMs ?? DEFAULT_FIRST_SWEEP_DELAY_MS, this.options.sweepIntervalMs));
  }

  /** Stops scheduling; a sweep under way stops after its current batch, and this waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => {});
  }

  /** Sweeps now (a sweep already running here is joined, not doubled). */
  sweep(): Promise<SweepReport> {
    this.running ??= this.sweepOnce().finally(() => (this.running = null));
    return this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.sweep()
        .catch((err: unknown) => this.deps.logger.error({ err }, 'retention sweep failed'))
        .finally(() => this.schedule(this.options.sweepIntervalMs));
    }, delayMs);
    this.timer.unref();
  }

  private async sweepOnce(): Promise<SweepReport> {
    const started = Date.now();
    const report: SweepReport = { skipped: false, jobsDeleted: 0, imagesDeleted: 0, orphansDeleted: 0, ms: 0 };
    const lease = await this.deps.lock.tryAcquire(LOCK_NAME);
    if (!lease) {
      this.deps.logger.debug('retention sweep skipped: another one holds the lock');
      return { ...report, skipped: true };
    }
    try {
      const goOn = () => !this.stopped && !lease.lost;
      if (this.options.maxAgeMs > 0) await this.deleteExpiredJobs(new Date(this.now() - this.options.maxAgeMs), report, goOn);
      if (goOn()) await this.deleteOrphanImages(new Date(this.now() - this.orphanGraceMs), report, goOn);
    } finally {
      await lease.release();
    }
    report.ms = Date.now() - started;
    this.deps.metrics?.retentionLastSweep.set(this.now() / 1000);
    const level = report.jobsDeleted + report.orphansDeleted > 0 ? 'info' : 'debug';
    this.deps.logger[level]({ ...report, retentionMs: this.options.maxAgeMs }, 'retention sweep done');
    return report;
  }

  private async deleteExpiredJobs(cutoff: Date, report: SweepReport, goOn: () => boolean): Promise<void> {
    const { store, logger, metrics } = this.deps;
    while (goOn()) {
      const batch = await store.expiredJobs(cutoff, this.batchSize);
      if (batch.length === 0) return;
      const ready: string[] = [];
      let images = 0;
      for (const job of batch) {
        // A job whose images could not all be deleted keeps its record, to be tried again.
        const failed = await this.deleteImages(job.images);
        if (failed === 0) {
          ready.push(job.id);
          images += job.images.length;
        } else {
          logger.warn(
            { jobId: job.id, failed },
            'retention: images of an expired job could not be deleted; keeping the job for the next sweep',
          );
        }
      }
      const deleted = await store.deleteJobs(ready, cutoff);
      report.jobsDeleted += deleted;
      report.imagesDeleted += images;
      metrics?.retentionJobsDeleted.inc(deleted);
      metrics?.retentionImagesDeleted.inc({ reason: 'expired' }, images);
      // Nothing deleted (every one failed): the same batch would come back at once.
      if (deleted === 0 || batch.length < this.batchSize) return;
      await nextTurn();
    }
  }

  private async deleteOrphanImages(writtenBefore: Date, report: SweepReport, goOn: () => boolean): Promise<void> {
    const { store, metrics } = this.deps;
    let cursor: NotedImageCursor | null = null;
    while (goOn()) {
      const batch = await store.notedImages(writtenBefore, cursor, this.batchSize);
      if (batch.length === 0) return;
      cursor = batch.at(-1)!;
      const orphans = batch.filter((n) => n.fate === 'orphan').map((n) => n.name);
      const gone = new Set(orphans);
      if ((await this.deleteImages(orphans, (name) => gone.delete(name))) > 0) {
        this.deps.logger.warn({ failed: orphans.length - gone.size }, 'retention: some orphan images could not be deleted');
      }
      // Referenced ones need no note any more (the job's record lists them); pending ones stay.
      const forget = [...batch.filter((n) => n.fate === 'referenced').map((n) => n.name), ...gone];
      await store.forgetImages(forget);
      report.orphansDeleted += gone.size;
      metrics?.retentionImagesDeleted.inc({ reason: 'orphan' }, gone.size);
      if (batch.length < this.batchSize) return;
      await nextTurn();
    }
  }

  /** Deletes images a few at a time; returns how many failed (each failure is logged). */
  private async deleteImages(names: readonly string[], onFailed?: (name: string) => void): Promise<number> {
    let failed = 0;
    for (let i = 0; i < names.length; i += DELETE_CONCURRENCY) {
      await Promise.all(
        names.slice(i, i + DELETE_CONCURRENCY).map((name) =>
          this.deps.images.delete(name).catch((err: unknown) => {
            failed++;
            onFailed?.(name);
            this.deps.logger.warn({ err }, 'retention: could not delete an image');
          }),
        ),
      );
    }
    return failed;
  }
}
