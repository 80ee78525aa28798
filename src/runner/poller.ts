import { jobLogger, type Logger } from '../logger.js';
import { EngineProtocolError, EngineUnavailableError, type Engine } from '../engines/engine.js';
import { isTerminal, type Job } from '../jobs/job.js';
import { JobErrorCode } from '../generation/request.js';
import { errorReason } from '../jobs/job-transitions.js';
import type { JobUpdater } from '../jobs/job-updater.js';
import { backoffDelay } from '../retry/backoff.js';
import { TaskSlots } from '../concurrency/task-slots.js';
import { StorageUnavailableError } from '../storage/storage-fault.js';

export interface PollerOptions {
  minIntervalMs: number;
  maxIntervalMs: number;
  /** Status calls in flight at once, all jobs together. */
  concurrency: number;
  /** How long an engine may stay unreachable for a job before the job fails. */
  failureBudgetMs: number;
}

interface Tracked {
  job: Job;
  dueAt: number;
  intervalMs: number;
  /** Polls in a row that found no change: the interval doubles with each, up to the maximum. */
  quietPolls: number;
  inFlight: boolean;
  /** The engine said it changed while a poll was in flight: poll again right after. */
  woken: boolean;
  unreachableSince: number | null;
}

/**
 * Polls the engine for every submitted, unfinished job. One schedule per job, whoever watches
 * it: subscribers never cause polls, so a job is asked about at most once per interval however
 * many clients follow it. The interval adapts: back to the minimum whenever the job changes,
 * doubling up to the maximum while nothing happens.
 */
export class Poller {
  private readonly tracked = new Map<string, Tracked>();
  /** Jobs whose preview someone follows, and how many follow it. */
  private readonly previewWatchers = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private timerDueAt = Infinity;
  private unwatch: (() => void) | null = null;
  private readonly slots: TaskSlots;
  private running = false;

  constructor(
    private readonly engine: Engine,
    private readonly updater: JobUpdater,
    private readonly options: PollerOptions,
    private readonly logger: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    this.slots = new TaskSlots(options.concurrency, (err) => logger.error({ err }, 'poll failed'));
  }

  start(): void {
    this.running = true;
    this.unwatch = this.engine.onChange?.((handle) => this.wake(handle)) ?? null;
    this.schedule();
  }

  /** Stops scheduling and waits for status calls in flight to finish. */
  async stop(): Promise<void> {
    this.running = false;
    this.unwatch?.();
    this.unwatch = null;
    this.clearTimer();
    await this.slots.idle();
  }

  track(job: Job): void {
    if (isTerminal(job.status) || this.tracked.has(job.id)) return;
    this.tracked.set(job.id, {
      job,
      // An engine that tells of changes may have told before the job was tracked here: ask it at once.
      dueAt: this.clock() + (this.unwatch ? 0 : this.options.minIntervalMs),
      intervalMs: this.options.minIntervalMs,
      quietPolls: 0,
      inFlight: false,
      woken: false,
      unreachableSince: null,
    });
    this.schedule();
  }

  /** The engine says the job with this handle started or ended: poll it now (after the poll in flight, if one is). */
  private wake(handle: string): void {
    for (const t of this.tracked.values()) {
      if (t.job.engineHandle !== handle) continue;
      t.quietPolls = 0;
      t.intervalMs = this.options.minIntervalMs;
      if (t.inFlight) t.woken = true;
      else t.dueAt = this.clock();
    }
    this.schedule();
  }

  untrack(jobId: string): void {
    this.tracked.delete(jobId);
  }

  /**
   * Asks the engine for previews of this job until the returned function is called. A job
   * followed from now on is polled at once, at the shortest interval, so the first preview
   * does not wait for a long back-off to end.
   */
  watchPreview(jobId: string): () => void {
    this.previewWatchers.set(jobId, (this.previewWatchers.get(jobId) ?? 0) + 1);
    const t = this.tracked.get(jobId);
    if (t && !t.inFlight) {
      t.quietPolls = 0;
      t.intervalMs = this.options.minIntervalMs;
      t.dueAt = Math.min(t.dueAt, this.clock());
      this.schedule();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.previewWatchers.get(jobId) ?? 1) - 1;
      if (left > 0) this.previewWatchers.set(jobId, left);
      else this.previewWatchers.delete(jobId);
    };
  }

  trackedCount(): number {
    return this.tracked.size;
  }

  /** Tracked jobs their engine has not started yet (as of the last poll). */
  pendingCount(): number {
    let n = 0;
    for (const t of this.tracked.values()) if (t.job.status === 'PENDING') n++;
    return n;
  }

  private schedule(): void {
    if (!this.running || this.slots.free === 0) return;
    let next = Infinity;
    for (const t of this.tracked.values()) if (!t.inFlight && t.dueAt < next) next = t.dueAt;
    if (next === Infinity) return this.clearTimer();
    if (this.timer && next >= this.timerDueAt) return;
    this.clearTimer();
    this.timerDueAt = next;
    this.timer = setTimeout(() => this.tick(), Math.max(0, next - this.clock()));
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerDueAt = Infinity;
  }

  private tick(): void {
    this.timer = null;
    this.timerDueAt = Infinity;
    const now = this.clock();
    const due = [...this.tracked.values()].filter((t) => !t.inFlight && t.dueAt <= now).sort((a, b) => a.dueAt - b.dueAt);
    for (const t of due) {
      if (this.slots.free === 0) break;
      t.inFlight = true;
      this.slots.run(
        () => this.poll(t).catch((err: unknown) => jobLogger(this.logger, t.job.id).error({ err }, 'poll failed')),
        () => {
          t.inFlight = false;
          this.schedule();
        },
      );
    }
    this.schedule();
  }

  private async poll(t: Tracked): Promise<void> {
    const before = t.job;
    let after: Job;
    try {
      const status = await this.engine.status(before.engineHandle ?? '', before, { preview: this.previewWatchers.has(before.id) });
      t.unreachableSince = null;
      after = await this.updater.applyEngineStatus(before, status);
    } catch (err) {
      try {
        after = await this.handleError(t, err);
      } catch (storeErr) {
        // Failing the job needs the store too: it is tried again at the next poll.
        if (!(storeErr instanceof StorageUnavailableError)) throw storeErr;
        jobLogger(this.logger, before.id).warn({ err: storeErr.message }, 'cannot record the job’s failure now; will poll again');
        after = before;
      }
    }
    if (isTerminal(after.status)) {
      this.tracked.delete(after.id);
      return;
    }
    if (!this.tracked.has(after.id)) return; // canceled meanwhile
    const changed = after.version !== before.version;
    t.job = after;
    t.quietPolls = changed ? 0 : t.quietPolls + 1;
    t.intervalMs = backoffDelay(t.quietPolls, { baseMs: this.options.minIntervalMs, maxMs: this.options.maxIntervalMs });
    t.dueAt = t.woken ? this.clock() : this.clock() + t.intervalMs;
    t.woken = false;
  }

  private async handleError(t: Tracked, err: unknown): Promise<Job> {
    const job = t.job;
    const log = jobLogger(this.logger, job.id);
    if (err instanceof StorageUnavailableError) {
      // The engine answered but the change could not be recorded (the database is unreachable):
      // nothing changed in the store, so the next poll (backing off) brings the same news again.
      log.warn({ err: err.message }, 'cannot record the job’s progress now; will poll again');
      return job;
    }
    if (err instanceof EngineUnavailableError) {
      const now = this.clock();
      t.unreachableSince ??= now;
      if (now - t.unreachableSince < this.options.failureBudgetMs) {
        log.warn({ err: err.message }, 'engine unreachable; will poll again');
        return job;
      }
      return this.updater.fail(job, JobErrorCode.ENGINE_UNREACHABLE, `the engine stayed unreachable: ${err.message}`);
    }
    if (err instanceof EngineProtocolError) {
      return this.updater.fail(job, JobErrorCode.ENGINE_BAD_REPLY, err.message);
    }
    log.error({ err }, 'polling failed');
    return this.updater.fail(job, JobErrorCode.INTERNAL, `internal error while checking the job with its engine: ${errorReason(err)}`);
  }
}
