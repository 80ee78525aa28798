import { JobErrorCode } from '../generation/request.js';
import type { Job } from '../jobs/job.js';
import type { JobStore } from '../jobs/job-store.js';
import type { JobUpdater } from '../jobs/job-updater.js';
import type { Logger } from '../logger.js';
import { fairPriority, type JobQueue } from './job-queue.js';

export interface ReconcileReport {
  /** Unfinished jobs in the store. */
  active: number;
  /** Of those, queued again because the queue lacked them. */
  requeued: number;
  /** Of those, failed because the queue gave up on them (worker lost too often, attempts spent). */
  failed: number;
}

/** Jobs whose state is asked of Redis at once (the calls are pipelined on one connection). */
const BATCH = 50;

/**
 * Keeps the queue and the store agreeing, at start and then periodically (several API
 * processes may all run one: every step is harmless to repeat):
 * - an unfinished job the queue lacks (the process died between the commit and the add, or the
 *   add failed while Redis was away) is added again, under its own id;
 * - an unfinished job whose queue entry ended without finishing it in the store (its worker was
 *   killed more often than allowed, or its attempts were spent while the store was unreachable)
 *   is failed with the queue's reason. Never left PROCESSING.
 */
export class Reconciler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private stopped = false;

  constructor(
    private readonly deps: {
      store: JobStore;
      queue: JobQueue;
      updater: JobUpdater;
      logger: Logger;
      intervalMs: number;
      /** Runs after each pass with the unfinished jobs it saw (the runner's own bookkeeping). */
      afterPass?: (active: Job[]) => Promise<void>;
    },
  ) {}

  /** The first pass now, in the background (Redis may be away at start), then every interval. */
  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  async pass(): Promise<ReconcileReport> {
    const active = await this.deps.store.listActive();
    const report: ReconcileReport = { active: active.length, requeued: 0, failed: 0 };
    // A job re-added gets the priority a create gives (fairPriority): its rank among its owner's
    // unfinished jobs, oldest first (listActive's order).
    const rank = new Map<string, number>();
    const seen = new Map<string, number>();
    for (const job of active) {
      const n = (seen.get(job.ownerId) ?? 0) + 1;
      seen.set(job.ownerId, n);
      rank.set(job.id, n);
    }
    for (let i = 0; i < active.length && !this.stopped; i += BATCH) {
      const batch = active.slice(i, i + BATCH);
      const states = await Promise.all(batch.map((job) => this.deps.queue.state(job.id)));
      await Promise.all(
        batch.map(async (job, k) => {
          const state = states[k]!;
          if (state === 'unknown') {
            await this.deps.queue.add(job, fairPriority(rank.get(job.id)!));
            report.requeued++;
            this.deps.logger.info({ jobId: job.id, status: job.status }, 'queued an unfinished job the queue lacked');
          } else if (state === 'failed' || state === 'completed') {
            const reason = (await this.deps.queue.failedReason(job.id)) ?? `the queue entry is ${state}`;
            const after = await this.giveUp(job, reason);
            if (after.status === 'FAILURE' && after.version !== job.version) report.failed++;
          }
        }),
      );
    }
    await this.deps.afterPass?.(active);
    return report;
  }

  private giveUp(job: Job, reason: string): Promise<Job> {
    this.deps.logger.warn({ jobId: job.id, reason }, 'the queue ended an unfinished job; it fails');
    if (/stalled more than allowable limit|started more than allowable limit/.test(reason)) {
      return this.deps.updater.fail(
        job,
        JobErrorCode.ENGINE_LOST_JOB,
        `the workers running this job stopped (killed or cut off) more often than allowed: ${reason}`,
      );
    }
    return this.deps.updater.fail(job, JobErrorCode.INTERNAL, `the job could not be run: ${reason}`);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const run = this.pass().then(
        (report) => {
          if (report.requeued > 0 || report.failed > 0) this.deps.logger.info(report, 'reconciled the queue with the store');
        },
        (err: unknown) =>
          this.deps.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'reconciling failed; will retry'),
      );
      this.running = run.finally(() => {
        this.running = null;
        this.schedule(this.deps.intervalMs);
      });
    }, delayMs);
  }
}
