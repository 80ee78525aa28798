import { isTerminal, type Job } from './job.js';
import type { JobEvents } from './job-events.js';

/**
 * The async iterator behind Subscription.jobStatus: the job's current state first, then every
 * newer version, ending after a terminal state.
 *
 * Hand-written rather than an async generator on purpose: a generator parked on an await cannot
 * be returned from until its next event, so a client that leaves a quiet job would leak its
 * listener. Here return() unsubscribes at once.
 */
export class JobStream implements AsyncIterableIterator<Job> {
  private readonly buffer: Job[] = [];
  private readonly early: Job[] = [];
  private waiting: ((result: IteratorResult<Job>) => void) | null = null;
  private started = false;
  private ended = false;
  private lastVersion = 0;
  private lastPreview: string | undefined;
  private readonly unsubscribe: () => void;

  /** Subscribes at once, so that nothing published before begin() is missed. onClose: called once when the stream ends. */
  constructor(
    events: JobEvents,
    jobId: string,
    private readonly onClose?: () => void,
  ) {
    this.unsubscribe = events.subscribe(jobId, (job) => (this.started ? this.offer(job) : this.early.push(job)));
  }

  /** Starts the stream from a snapshot read after subscribing. */
  begin(snapshot: Job): this {
    this.started = true;
    this.offer(snapshot);
    for (const job of this.early.sort((a, b) => a.version - b.version)) this.offer(job);
    this.early.length = 0;
    return this;
  }

  next(): Promise<IteratorResult<Job>> {
    const job = this.buffer.shift();
    if (job) return Promise.resolve({ value: job, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  return(): Promise<IteratorResult<Job>> {
    this.close();
    this.buffer.length = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(error?: unknown): Promise<IteratorResult<Job>> {
    void this.return();
    return Promise.reject(error);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private offer(job: Job): void {
    if (this.ended || job.version < this.lastVersion) return;
    // The same version again is news only when it brings a new preview (previews are not stored).
    const preview = job.progress?.preview;
    if (job.version === this.lastVersion && (!preview || preview === this.lastPreview)) return;
    this.lastVersion = job.version;
    if (preview) this.lastPreview = preview;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: job, done: false });
    } else {
      // A slow reader gets the latest progress rather than a backlog of it; transitions are kept.
      const last = this.buffer.at(-1);
      if (last && last.status === job.status) this.buffer[this.buffer.length - 1] = job;
      else this.buffer.push(job);
    }
    if (isTerminal(job.status)) this.close();
  }

  private close(): void {
    if (this.ended) return;
    this.ended = true;
    this.unsubscribe();
    this.onClose?.();
    if (this.waiting && this.buffer.length === 0) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: undefined, done: true });
    }
  }
}
