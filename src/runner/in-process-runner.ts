import { jobLogger, type Logger } from '../logger.js';
import type { Engine } from '../engines/engine.js';
import type { Job } from '../jobs/job.js';
import type { JobStore } from '../jobs/job-store.js';
import type { JobUpdater } from '../jobs/job-updater.js';
import type { JobRunner } from '../jobs/job-runner.js';
import { Poller, type PollerOptions } from './poller.js';
import { Submitter } from './submitter.js';

export interface InProcessRunnerOptions {
  poller: PollerOptions;
  /** Engine submissions in flight at once. */
  submitConcurrency: number;
  /**
   * Whether start() takes up the store's unfinished jobs (default). A queue worker says no: its
   * jobs come from the queue, and the others belong to other workers.
   */
  resume?: boolean;
}

/**
 * Runs jobs in this process: the submitter hands them to the engine (a bounded number at a
 * time, retrying while it is unreachable), the poller follows each submitted job to its end.
 */
export class InProcessRunner implements JobRunner {
  private readonly poller: Poller;
  private readonly submitter: Submitter;

  constructor(
    private readonly engine: Engine,
    private readonly store: JobStore,
    private readonly updater: JobUpdater,
    private readonly options: InProcessRunnerOptions,
    private readonly logger: Logger,
  ) {
    this.poller = new Poller(engine, updater, options.poller, logger);
    this.submitter = new Submitter(
      engine,
      updater,
      this.poller,
      { concurrency: options.submitConcurrency, failureBudgetMs: options.poller.failureBudgetMs },
      logger,
    );
  }

  async start(): Promise<Job[]> {
    // What a previous run left: submit what never reached the engine, poll the rest.
    const active = this.options.resume === false ? [] : await this.store.listActive();
    for (const job of active) {
      if (job.engineHandle) this.poller.track(job);
      else this.submitter.enqueue(job);
    }
    this.poller.start();
    this.submitter.start();
    return active;
  }

  async stop(): Promise<void> {
    await Promise.all([this.submitter.stop(), this.poller.stop()]);
  }

  async enqueue(job: Job): Promise<void> {
    this.submitter.enqueue(job);
  }

  async cancel(job: Job): Promise<Job> {
    const canceled = await this.updater.cancel(job);
    if (canceled.status !== 'CANCELED') return canceled;
    this.poller.untrack(job.id);
    this.submitter.forget(job.id);
    if (job.engineHandle) {
      this.engine
        .cancel(job.engineHandle, { id: job.id, mode: job.mode, params: job.params })
        .catch((err: unknown) => jobLogger(this.logger, job.id).warn({ err }, 'engine cancel failed'));
    }
    return canceled;
  }

  /**
   * Stops following a job without touching it: neither the store nor the engine hears of it. A
   * queue worker hands its jobs back this way when it stops, for another worker to take over.
   */
  release(jobId: string): void {
    this.poller.untrack(jobId);
    this.submitter.forget(jobId);
  }

  async queuePosition(job: Job): Promise<number | null> {
    if (job.status !== 'PENDING') return null;
    const live = this.engine.queue;
    const here = this.submitter.queuePosition(job.id);
    if (live) {
      // Not submitted yet: behind everything already waiting in the engine.
      if (here !== null) return live.waiting() + here;
      return live.ahead(job.id);
    }
    // The engine's figure as of the last poll, and before it has the job, ours ahead of it.
    if (job.engineQueuePosition !== null) return job.engineQueuePosition;
    return job.engineHandle ? null : (here ?? 0);
  }

  watchPreview(jobId: string): () => void {
    return this.poller.watchPreview(jobId);
  }

  async queueDepth(): Promise<number> {
    return this.submitter.waitingCount() + this.poller.pendingCount();
  }

  /** Jobs followed on the engine now (for /metrics and tests). */
  trackedCount(): number {
    return this.poller.trackedCount();
  }
}
