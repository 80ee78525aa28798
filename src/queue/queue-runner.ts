import { PREVIEW_LEASE_MS } from '../engines/engine.js';
import { isTerminal, type Job } from '../jobs/job.js';
import type { JobRunner } from '../jobs/job-runner.js';
import type { JobStore } from '../jobs/job-store.js';
import type { JobUpdater } from '../jobs/job-updater.js';
import type { Logger } from '../logger.js';
import { CONTROL_CHANNEL, encodeControl, type ControlMessage } from './control-messages.js';
import { fairPriority, type JobQueue } from './job-queue.js';
import { Reconciler } from './reconciler.js';
import type { RedisBus } from './redis-bus.js';
import type { RedisJobEvents } from './redis-job-events.js';

export interface QueueRunnerDeps {
  queue: JobQueue;
  bus: RedisBus;
  events: RedisJobEvents;
  store: JobStore;
  updater: JobUpdater;
  logger: Logger;
  reconcileIntervalMs: number;
  /**
   * The owner's unfinished jobs now, this one included (the per-key cap's count on Redis), for
   * the queue's order between keys (fairPriority); null or absent: taken as its first.
   */
  unfinishedCount?: (ownerId: string) => Promise<number | null>;
}

/**
 * The runner of an API process when jobs run on workers (REDIS_URL): it runs no generation. A
 * job is committed to the store before it gets here; enqueue adds it to the BullMQ queue under
 * its own id, and if that fails (Redis away) the create still stands: the reconciler adds it
 * later. A cancel is persisted first, then the waiting entry is removed and every worker is told
 * (the one running the job stops it between steps).
 *
 * It also follows the end of every unfinished job it knows of (those of the store at start, and
 * those created here), for whoever counts them (the per-key cap, webhooks): ends announced by
 * workers, and, as a safety net for announcements missed while Redis was away, what each
 * reconciling pass finds finished in the store.
 */
export class QueueRunner implements JobRunner {
  readonly reconciler: Reconciler;
  private readonly unfinished = new Map<string, Job>();
  private readonly finishedListeners: ((job: Job) => void)[] = [];
  private readonly passListeners: ((active: Job[]) => Promise<void>)[] = [];

  constructor(private readonly deps: QueueRunnerDeps) {
    this.reconciler = new Reconciler({
      store: deps.store,
      queue: deps.queue,
      updater: deps.updater,
      logger: deps.logger,
      intervalMs: deps.reconcileIntervalMs,
      afterPass: async (active) => {
        await this.sweep(active);
        for (const listener of this.passListeners) await listener(active);
      },
    });
    deps.updater.onFinished((job) => this.finished(job));
  }

  /** Called once for each job that ends elsewhere (a worker) or here (a cancel). */
  onFinished(listener: (job: Job) => void): void {
    this.finishedListeners.push(listener);
  }

  /** Called after each reconciling pass with the store's unfinished jobs (the per-key cap re-checks its record). */
  onReconciled(listener: (active: Job[]) => Promise<void>): void {
    this.passListeners.push(listener);
  }

  async start(): Promise<Job[]> {
    const active = await this.deps.store.listActive();
    for (const job of active) this.unfinished.set(job.id, job);
    // Not awaited: with Redis away at start the subscription holds once it is back, and until
    // then the reconciler's sweep reports the ends.
    this.deps.events.onFinished((job) => this.finished(job)).catch((err: unknown) => this.warn('', 'could not follow job ends', err));
    this.reconciler.start();
    return active;
  }

  async stop(): Promise<void> {
    for (const timer of this.previewTimers) clearInterval(timer);
    this.previewTimers.clear();
    await this.reconciler.stop();
    await this.deps.queue.close();
  }

  async enqueue(job: Job): Promise<void> {
    this.unfinished.set(job.id, job);
    try {
      const unfinished = (await this.deps.unfinishedCount?.(job.ownerId)) ?? 1;
      await this.deps.queue.add(job, fairPriority(unfinished));
    } catch (err) {
      this.deps.logger.warn(
        { jobId: job.id, err: err instanceof Error ? err.message : String(err) },
        'could not queue the job now; it is stored and the reconciler queues it',
      );
    }
  }

  async cancel(job: Job): Promise<Job> {
    const canceled = await this.deps.updater.cancel(job);
    if (canceled.status !== 'CANCELED') return canceled;
    // Best effort, both: a waiting entry left behind is skipped by the worker (the store says CANCELED).
    await this.deps.queue.remove(job.id).catch((err: unknown) => this.warn(job.id, 'could not remove the queued job', err));
    this.control({ type: 'cancel', jobId: job.id });
    return canceled;
  }

  async queuePosition(job: Job): Promise<number | null> {
    if (job.status !== 'PENDING') return null;
    return this.deps.queue.position(job.id).catch(() => null);
  }

  private readonly previewTimers = new Set<NodeJS.Timeout>();

  /** Tells the workers, now and while watched, that someone follows this job's preview. */
  watchPreview(jobId: string): () => void {
    const ask = () => this.control({ type: 'preview', jobId });
    ask();
    const timer = setInterval(ask, PREVIEW_LEASE_MS / 3);
    timer.unref();
    this.previewTimers.add(timer);
    return () => {
      clearInterval(timer);
      this.previewTimers.delete(timer);
    };
  }

  /**
   * The queue's depth as BullMQ counts it (every API process sees the same figure: the queue is
   * shared); NaN when Redis does not answer, so a scrape shows the gap rather than a stale number.
   */
  async queueDepth(): Promise<number> {
    try {
      return await this.deps.queue.depth();
    } catch {
      return Number.NaN;
    }
  }

  /** Unfinished jobs this process follows the end of (for tests and gauges). */
  trackedCount(): number {
    return this.unfinished.size;
  }

  private control(message: ControlMessage): void {
    this.deps.bus
      .publish(CONTROL_CHANNEL, encodeControl(message))
      .catch((err: unknown) => this.warn(message.jobId, `could not send ${message.type}`, err));
  }

  private finished(job: Job): void {
    if (!isTerminal(job.status) || !this.unfinished.delete(job.id)) return;
    for (const listener of this.finishedListeners) listener(job);
  }

  /** Jobs followed here that the store no longer lists as unfinished: their end was missed. */
  private async sweep(active: Job[]): Promise<void> {
    const stillActive = new Set(active.map((j) => j.id));
    for (const id of [...this.unfinished.keys()]) {
      if (stillActive.has(id)) continue;
      const job = await this.deps.store.get(id);
      if (!job) this.unfinished.delete(id);
      else if (isTerminal(job.status)) this.finished(job);
    }
  }

  private warn(jobId: string, what: string, err: unknown): void {
    this.deps.logger.warn({ jobId, err: err instanceof Error ? err.message : String(err) }, what);
  }
}
