import { hostname } from 'node:os';
import { DelayedError, UnrecoverableError, WaitingError, Worker, type Job as QueueEntry } from 'bullmq';
import type { QueueConfig } from '../config.js';
import { PREVIEW_LEASE_MS, type Engine } from '../engines/engine.js';
import { JobErrorCode } from '../generation/request.js';
import { isTerminal, type Job, type JobStatus } from '../jobs/job.js';
import type { JobStore } from '../jobs/job-store.js';
import type { JobUpdater } from '../jobs/job-updater.js';
import { jobLogger, type Logger } from '../logger.js';
import { InProcessRunner } from '../runner/in-process-runner.js';
import type { PollerOptions } from '../runner/poller.js';
import { CONTROL_CHANNEL, decodeControl } from './control-messages.js';
import { QUEUE_NAME, type QueuedJobData } from './job-queue.js';
import type { RedisBus } from './redis-bus.js';
import { redisOptions, watchConnection } from './redis-connection.js';
import { backoffDelay } from '../retry/backoff.js';
import { StorageUnavailableError } from '../storage/storage-fault.js';

/** The abort reason a stopping worker gives its own jobs: hand them back, do not cancel them. */
const HAND_BACK = 'worker stopping: job handed back';

export interface GenerationWorkerOptions {
  queue: QueueConfig;
  /** Jobs run at once by this worker. */
  concurrency: number;
  poller: PollerOptions;
  submitConcurrency: number;
  /**
   * How often a running job's record is read back, to notice an end decided elsewhere whose
   * message this worker missed (a cancel sent while its Redis connection was down).
   */
  storeCheckMs?: number;
}

interface Running {
  /** Resolves with the job once it is terminal: ended here (external false) or found so in the store. */
  end: (job: Job, external: boolean) => void;
  preview: { release: () => void; timer: NodeJS.Timeout } | null;
}

export type ProcessResult = { status: JobStatus; skipped?: boolean };

/**
 * A worker process's side of the queue: a BullMQ Worker whose processor runs each job through
 * this process's InProcessRunner (its submitter hands the job to the engine, its poller follows
 * it with per-step progress through the JobUpdater, which persists and then publishes every
 * change), and returns once the store holds the job's end.
 *
 * - A job the store no longer has unfinished (canceled while waiting) is skipped: it never starts.
 * - A cancel (the control channel, or the store found CANCELED) aborts the processor's signal; the
 *   engine stops between steps, and the entry fails with UnrecoverableError, so it is not tried
 *   again. A job that ends FAILURE (its own fault, or its engine's) fails the same way: the store
 *   holds its end, which no retry could change.
 * - A worker killed mid-job stops renewing its lock; another worker's stalled check puts the job
 *   back, and it is taken over (the store says PROCESSING with its engine handle: the new worker's
 *   poller asks the engine, which resumes or still has it). After maxStalledCount losses BullMQ
 *   fails the entry, and the reconciler fails the job with that reason.
 * - A job that cannot be read (the store unreachable) waits in the queue, delayed with back-off
 *   (no attempt spent), for as long as the poller's failure budget: the database's outage, not the
 *   job, decides. Other unexpected errors are retried up to the attempts allowed; after the
 *   last, the job is failed with the error as its reason.
 * - stop(): takes no more jobs, lets running ones finish within the grace period, then hands the
 *   rest back to the queue (to the front of the wait list) for another worker.
 */
export class GenerationWorker {
  private worker: Worker<QueuedJobData, ProcessResult, string> | null = null;
  private readonly runner: InProcessRunner;
  private readonly running = new Map<string, Running>();
  private readonly onControl = (text: string) => this.control(text);

  constructor(
    private readonly engine: Engine,
    private readonly store: JobStore,
    private readonly updater: JobUpdater,
    private readonly bus: RedisBus,
    private readonly options: GenerationWorkerOptions,
    private readonly logger: Logger,
  ) {
    this.runner = new InProcessRunner(
      engine,
      store,
      updater,
      { poller: options.poller, submitConcurrency: options.submitConcurrency, resume: false },
      logger,
    );
    updater.onFinished((job) => this.running.get(job.id)?.end(job, false));
  }

  async start(): Promise<void> {
    await this.runner.start();
    await this.bus.subscribe(CONTROL_CHANNEL, this.onControl);
    const q = this.options.queue;
    const worker = new Worker<QueuedJobData, ProcessResult, string>(
      QUEUE_NAME,
      (entry, token, signal) => this.process(entry, token, signal),
      {
        connection: redisOptions(q.redisUrl, 'wait', `${q.prefix}:worker`),
        prefix: q.prefix,
        name: `${hostname()}:${process.pid}`,
        concurrency: this.options.concurrency,
        lockDuration: q.lockMs,
        stalledInterval: q.stalledIntervalMs,
        maxStalledCount: q.maxStalledCount,
        // BullMQ wakes no idle worker when a prioritized job is moved back to wait (a hand-back):
        // idle workers look again every drainDelay seconds (5 by default), so a short one.
        drainDelay: 1,
      },
    );
    watchConnection(worker, 'worker', this.logger);
    worker.on('failed', (entry, err) => {
      if (entry && err.name !== 'UnrecoverableError') void this.afterFailure(entry, err);
    });
    worker.on('stalled', (jobId) => this.logger.warn({ jobId }, 'job lost its worker; queued again for another'));
    this.worker = worker;
    await worker.waitUntilReady();
  }

  /**
   * Takes no more jobs; waits up to graceMs for the running ones to end, then hands the rest
   * back. Resolves once the BullMQ worker is closed and the engine calls in flight are done.
   */
  async stop(graceMs: number): Promise<void> {
    const worker = this.worker;
    if (worker) {
      const closing = worker.close();
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<'grace'>((resolve) => (timer = setTimeout(() => resolve('grace'), graceMs)));
      if ((await Promise.race([closing, graceOver])) === 'grace') {
        this.logger.warn({ jobs: [...this.running.keys()] }, 'grace period over: handing the running jobs back to the queue');
        worker.cancelAllJobs(HAND_BACK);
        await closing;
      }
      clearTimeout(timer);
    }
    this.bus.unsubscribe(CONTROL_CHANNEL, this.onControl);
    await this.runner.stop();
  }

  /** Jobs this worker runs now. */
  runningCount(): number {
    return this.running.size;
  }

  /** Jobs its runner follows on the engine now. */
  trackedCount(): number {
    return this.runner.trackedCount();
  }

  private async process(
    entry: QueueEntry<QueuedJobData>,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ProcessResult> {
    const id = entry.id!;
    const log = jobLogger(this.logger, id);
    let job: Job | null;
    try {
      job = await this.store.get(id);
    } catch (err) {
      if (err instanceof StorageUnavailableError) await this.waitForStore(entry, token, err);
      throw err;
    }
    if (entry.data.storeAway) {
      // Read at last: a later outage gets a budget of its own.
      const { storeAway: _, ...data } = entry.data;
      await entry.updateData(data).catch(() => undefined);
    }
    if (!job) {
      log.warn('queued job not in the store; skipped');
      return { status: 'FAILURE', skipped: true };
    }
    if (isTerminal(job.status)) {
      log.debug({ status: job.status }, 'queued job already finished; skipped');
      return { status: job.status, skipped: true };
    }
    const takeover = entry.attemptsStarted > 1 || entry.stalledCounter > 0;
    log.info(
      { attempt: entry.attemptsStarted, stalls: entry.stalledCounter, status: job.status },
      takeover ? 'taking the job over' : 'running the job',
    );

    const ended = new Promise<{ job: Job; external: boolean }>((resolve) => {
      this.running.set(id, { end: (j, external) => resolve({ job: j, external }), preview: null });
    });
    const aborted = new Promise<'aborted'>((resolve) => {
      if (signal?.aborted) resolve('aborted');
      signal?.addEventListener('abort', () => resolve('aborted'), { once: true });
    });
    const check = setInterval(() => {
      this.store.get(id).then(
        (now) => {
          if (now && isTerminal(now.status)) this.running.get(id)?.end(now, true);
        },
        (err: unknown) => log.warn({ err: errorMessage(err) }, 'could not read the job back'),
      );
    }, this.options.storeCheckMs ?? 1_000);
    check.unref();

    let outcome: { job: Job; external: boolean } | 'aborted';
    try {
      await this.runner.enqueue(job);
      outcome = await Promise.race([ended, aborted]);
    } finally {
      clearInterval(check);
      const running = this.running.get(id);
      this.running.delete(id);
      if (running?.preview) {
        clearTimeout(running.preview.timer);
        running.preview.release();
      }
    }

    if (outcome === 'aborted') {
      if (signal?.reason === HAND_BACK) {
        this.runner.release(id);
        try {
          await entry.moveToWait(token);
        } catch (err) {
          // Its lock then runs out and the stalled check puts it back instead.
          log.warn({ err: errorMessage(err) }, 'could not hand the job back; it is taken over once its lock expires');
        }
        log.info('handed back to the queue');
        throw new WaitingError();
      }
      // Canceled: the store already says so (persisted before the message was sent).
      const current = (await this.store.get(id).catch(() => null)) ?? job;
      this.stopFollowing(current);
      log.info('canceled while running; stopped');
      throw new UnrecoverableError('canceled');
    }

    const end = outcome.job;
    if (outcome.external) this.stopFollowing(end);
    if (end.status === 'SUCCESS') return { status: 'SUCCESS' };
    // The store holds the end; a retry could not change it.
    throw new UnrecoverableError(end.status === 'CANCELED' ? 'canceled' : `${end.error?.code ?? 'FAILURE'}: ${end.error?.message ?? ''}`);
  }

  /**
   * Puts a job this worker could not read back in the queue for later (delayed with back-off, which
   * spends no attempt), unless the store has been away for it longer than the failure budget: then
   * it returns, and the error counts as an attempt.
   */
  private async waitForStore(entry: QueueEntry<QueuedJobData>, token: string | undefined, err: StorageUnavailableError): Promise<void> {
    const now = Date.now();
    const away = entry.data.storeAway ?? { since: now, waits: 0 };
    if (!token || now - away.since >= this.options.poller.failureBudgetMs) return;
    const delay = backoffDelay(away.waits, { baseMs: 1_000, maxMs: 10_000 });
    await entry.updateData({ ...entry.data, storeAway: { since: away.since, waits: away.waits + 1 } });
    await entry.moveToDelayed(now + delay, token);
    jobLogger(this.logger, entry.id!).warn({ err: err.message, retryInMs: delay }, 'job store unreachable; the job waits in the queue');
    throw new DelayedError();
  }

  /** Stops following a job that ended elsewhere, and stops its engine work (unless it succeeded). */
  private stopFollowing(job: Job): void {
    this.runner.release(job.id);
    if (job.status !== 'SUCCESS' && job.engineHandle) {
      this.engine
        .cancel(job.engineHandle, { id: job.id, mode: job.mode, params: job.params })
        .catch((err: unknown) => jobLogger(this.logger, job.id).warn({ err: errorMessage(err) }, 'engine cancel failed'));
    }
  }

  /** After an unexpected error: once BullMQ will not try again, the job fails with that error. */
  private async afterFailure(entry: QueueEntry<QueuedJobData>, err: Error): Promise<void> {
    const id = entry.id!;
    try {
      if ((await entry.getState()) !== 'failed') {
        jobLogger(this.logger, id).warn({ attempt: entry.attemptsMade, err: err.message }, 'job attempt failed; it will be tried again');
        return;
      }
      const job = await this.store.get(id);
      if (job && !isTerminal(job.status)) {
        await this.updater.fail(job, JobErrorCode.INTERNAL, `the job could not be run (${entry.attemptsMade} attempts): ${err.message}`);
      }
    } catch (e) {
      // The reconciler fails it later from the queue's record.
      jobLogger(this.logger, id).warn({ err: errorMessage(e) }, 'could not record the failure of a job');
    }
  }

  private control(text: string): void {
    const message = decodeControl(text);
    if (!message) return;
    if (message.type === 'cancel') {
      if (this.worker?.cancelJob(message.jobId, 'canceled')) jobLogger(this.logger, message.jobId).info('cancel received');
      return;
    }
    const running = this.running.get(message.jobId);
    if (!running) return;
    // The new lease first, then the old one released: the poller never stops asking in between.
    const release = this.runner.watchPreview(message.jobId);
    if (running.preview) {
      clearTimeout(running.preview.timer);
      running.preview.release();
    }
    const timer = setTimeout(() => {
      release();
      if (running.preview?.timer === timer) running.preview = null;
    }, PREVIEW_LEASE_MS);
    timer.unref();
    running.preview = { release, timer };
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
