import { jobLogger, type Logger } from '../logger.js';
import { EngineProtocolError, EngineUnavailableError, type Engine } from '../engines/engine.js';
import { isTerminal, type Job } from '../jobs/job.js';
import { JobErrorCode } from '../generation/request.js';
import { errorReason } from '../jobs/job-transitions.js';
import { backoffDelay } from '../retry/backoff.js';
import type { JobUpdater } from '../jobs/job-updater.js';
import type { Poller } from './poller.js';
import { FairQueue } from '../concurrency/fair-queue.js';
import { TaskSlots } from '../concurrency/task-slots.js';
import { StorageUnavailableError } from '../storage/storage-fault.js';

export interface SubmitterOptions {
  concurrency: number;
  /** How long submissions may keep failing with a transient error before the job fails. */
  failureBudgetMs: number;
  /** Wait before retrying a submission after a transient error; doubles, capped at 30 s. */
  retryDelayMs?: number;
}

/**
 * Hands accepted jobs to the engine, a bounded number at a time, taking the API keys in turn
 * (FairQueue: each key's jobs oldest first, and a key with nothing waiting goes next), so one
 * key's backlog does not hold back another key's first job. The engine's handle is persisted
 * before the job is handed to the poller, so a restart knows whether a job still needs
 * submitting (no handle) or only polling.
 */
export class Submitter {
  /** Waiting jobs, by owner. */
  private readonly queue = new FairQueue<Job>();
  /** Jobs out of the queue whose engine.submit has not returned yet, in the order they left it. */
  private readonly submitting = new Map<string, number>();
  private dequeued = 0;
  /** Jobs waiting or being submitted now. */
  private readonly queued = new Set<string>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  /**
   * Transient submission failures so far, per job, for the back-off, and when the first one
   * happened: the failure budget runs from there, not from the job's creation, so a job queued
   * again later (after a restart) gets a fresh budget.
   */
  private readonly attempts = new Map<string, { count: number; since: number }>();
  private readonly slots: TaskSlots;
  private running = false;

  constructor(
    private readonly engine: Engine,
    private readonly updater: JobUpdater,
    private readonly poller: Poller,
    private readonly options: SubmitterOptions,
    private readonly logger: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    this.slots = new TaskSlots(options.concurrency, (err) => logger.error({ err }, 'submission failed'));
  }

  start(): void {
    this.running = true;
    this.pump();
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    await this.slots.idle();
  }

  /**
   * Jobs of this submitter that reach the engine before this one: those being submitted that
   * left the queue earlier, then those waiting ahead of it. Null once the engine has it.
   */
  queuePosition(jobId: string): number | null {
    const waiting = this.queue.position(jobId);
    if (waiting !== null) return this.submitting.size + waiting;
    const mine = this.submitting.get(jobId);
    if (mine === undefined) return null;
    let ahead = 0;
    for (const other of this.submitting.values()) if (other < mine) ahead++;
    return ahead;
  }

  /** Jobs waiting to be submitted or being submitted now (retries waiting included). */
  waitingCount(): number {
    return this.queued.size;
  }

  /** Drops a job that no longer needs submitting (canceled). */
  forget(jobId: string): void {
    this.queue.remove(jobId);
    this.submitting.delete(jobId);
    this.queued.delete(jobId);
    this.attempts.delete(jobId);
  }

  enqueue(job: Job): void {
    if (this.queued.has(job.id)) return;
    this.queued.add(job.id);
    this.push(job);
    this.pump();
  }

  private push(job: Job): void {
    this.queue.push(job.ownerId, job.id, job);
  }

  private shift(): Job | undefined {
    const next = this.queue.shift();
    if (!next) return undefined;
    this.submitting.set(next.id, this.dequeued++);
    return next.item;
  }

  private pump(): void {
    while (this.running && this.slots.free > 0) {
      const job = this.shift();
      if (!job) break;
      this.slots.run(
        () => this.submit(job).catch((err: unknown) => jobLogger(this.logger, job.id).error({ err }, 'submission failed')),
        () => this.pump(),
      );
    }
  }

  private async submit(job: Job): Promise<void> {
    // No re-read from the store: a cancel removes the job from this queue (forget), and the store
    // never lets a terminal job change, so a job canceled elsewhere mid-submit stays canceled.
    if (isTerminal(job.status) || job.engineHandle) {
      this.submitting.delete(job.id);
      this.queued.delete(job.id);
      this.attempts.delete(job.id);
      if (!isTerminal(job.status)) this.poller.track(job);
      return;
    }
    let current: Job;
    try {
      const submission = await this.engine
        .submit({ id: job.id, ownerId: job.ownerId, mode: job.mode, params: job.params })
        .finally(() => this.submitting.delete(job.id));
      jobLogger(this.logger, job.id).debug({ engine: this.engine.name }, 'job handed to the engine');
      try {
        current = submission.handle ? await this.updater.setEngineHandle(job, submission.handle) : job;
        current = await this.updater.applyEngineStatus(current, submission.status);
      } catch (err) {
        if (!(err instanceof StorageUnavailableError) || !submission.handle) throw err;
        // The engine has the job but the store cannot record it now (its database is
        // unreachable): the poller follows it by the handle known here and records what comes
        // next. Should this process stop first, the job (without a stored handle) is submitted again.
        jobLogger(this.logger, job.id).warn({ err: err.message }, 'cannot record the engine’s handle now; following the job anyway');
        current = { ...job, engineHandle: submission.handle };
      }
    } catch (err) {
      const since = this.attempts.get(job.id)?.since ?? this.clock();
      if (
        (err instanceof EngineUnavailableError || err instanceof StorageUnavailableError) &&
        this.clock() - since < this.options.failureBudgetMs
      ) {
        this.retryLater(job, err);
        return;
      }
      try {
        current = await this.failFor(job, err);
      } catch (failErr) {
        if (!(failErr instanceof StorageUnavailableError)) throw failErr;
        this.retryLater(job, failErr);
        return;
      }
    }
    this.queued.delete(job.id);
    this.attempts.delete(job.id);
    if (!isTerminal(current.status)) this.poller.track(current);
  }

  private retryLater(job: Job, err: EngineUnavailableError | StorageUnavailableError): void {
    const { count: attempt, since } = this.attempts.get(job.id) ?? { count: 0, since: this.clock() };
    this.attempts.set(job.id, { count: attempt + 1, since });
    const delay = backoffDelay(attempt, { baseMs: this.options.retryDelayMs ?? 1_000, maxMs: 30_000 });
    const why = err instanceof StorageUnavailableError ? 'job store unavailable' : 'engine unavailable';
    jobLogger(this.logger, job.id).warn({ err: err.message, retryInMs: delay }, `${why}; submission will be retried`);
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      if (!this.queued.has(job.id)) return; // canceled while waiting to retry
      this.push(job);
      this.pump();
    }, delay);
    this.retryTimers.add(timer);
  }

  private failFor(job: Job, err: unknown): Promise<Job> {
    if (err instanceof EngineUnavailableError) {
      return this.updater.fail(job, JobErrorCode.ENGINE_UNREACHABLE, `the engine stayed unreachable: ${err.message}`);
    }
    if (err instanceof EngineProtocolError) return this.updater.fail(job, JobErrorCode.ENGINE_BAD_REPLY, err.message);
    jobLogger(this.logger, job.id).error({ err }, 'submission failed');
    return this.updater.fail(job, JobErrorCode.INTERNAL, `internal error while submitting the job to its engine: ${errorReason(err)}`);
  }
}
