import { randomUUID } from 'node:crypto';
import { isTerminal, type Job } from '../jobs/job.js';
import { InProcessJobEvents, type JobEvents, type JobListener } from '../jobs/job-events.js';
import type { Logger } from '../logger.js';
import { decodeJob, encodeJob } from './job-codec.js';
import type { RedisBus } from './redis-bus.js';

/** The channel of one job's events, and the one every finished job is also announced on. */
export const jobChannel = (jobId: string) => `job:${jobId}`;
export const FINISHED_CHANNEL = 'finished';

interface Envelope {
  /** The publishing process, so that it skips its own events (it delivered them already). */
  o: string;
  j: unknown;
}

/**
 * Job events across processes on Redis pub/sub: a process subscribes to the channel of a job
 * while anyone here follows it, and fans each event out to its listeners. Listeners in the
 * publishing process get the event at once, without the round trip.
 *
 * Pub/sub may lose an event (published before the subscription holds, or while the connection
 * was down), and a lost terminal event would leave a subscriber waiting forever. So each time a
 * job's subscription is acknowledged (first, and after every reconnection) its listeners are
 * handed the job as the store has it: never older than a published event, since the store is
 * written first. JobStream drops what it has already seen by version.
 */
export class RedisJobEvents implements JobEvents {
  private readonly origin = randomUUID();
  /** This process's listeners; a job's channel is subscribed to while it has any. */
  private readonly local = new InProcessJobEvents({ first: (jobId) => this.follow(jobId), last: (jobId) => this.unfollow(jobId) });
  private readonly handlers = new Map<string, (message: string) => void>();
  private readonly finishedListeners: JobListener[] = [];

  constructor(
    private readonly bus: RedisBus,
    /** The job as stored now (the store's get). */
    private readonly read: (jobId: string) => Promise<Job | null>,
    private readonly logger: Logger,
  ) {
    bus.onResubscribed(() => {
      for (const jobId of this.local.jobIds()) this.resync(jobId);
    });
  }

  publish(job: Job): void {
    this.local.publish(job);
    const message = `{"o":${JSON.stringify(this.origin)},"j":${encodeJob(job)}}`;
    const sent = [this.bus.publish(jobChannel(job.id), message)];
    if (isTerminal(job.status)) sent.push(this.bus.publish(FINISHED_CHANNEL, message));
    Promise.all(sent).catch((err: unknown) =>
      // Subscribers elsewhere catch up from the store when their connection comes back.
      this.logger.warn({ err: errorMessage(err), jobId: job.id, status: job.status }, 'could not publish a job event'),
    );
  }

  subscribe(jobId: string, listener: JobListener): () => void {
    return this.local.subscribe(jobId, listener);
  }

  listenerCount(): number {
    return this.local.listenerCount();
  }

  private follow(jobId: string): void {
    const handler = (message: string) => {
      const job = this.decode(message);
      if (job && job.id === jobId) this.local.publish(job);
    };
    this.handlers.set(jobId, handler);
    this.bus.subscribe(jobChannel(jobId), handler).then(
      () => this.resync(jobId),
      (err: unknown) => this.logger.warn({ err: errorMessage(err), jobId }, 'could not subscribe to job events'),
    );
  }

  private unfollow(jobId: string): void {
    const handler = this.handlers.get(jobId);
    this.handlers.delete(jobId);
    if (handler) this.bus.unsubscribe(jobChannel(jobId), handler);
  }

  /**
   * Jobs other processes brought to a terminal state (a worker's success or failure, another
   * replica's cancel), as they are announced. Starts listening on the first call.
   */
  async onFinished(listener: JobListener): Promise<void> {
    this.finishedListeners.push(listener);
    if (this.finishedListeners.length > 1) return;
    await this.bus.subscribe(FINISHED_CHANNEL, (message) => {
      const job = this.decode(message);
      if (!job) return;
      for (const l of this.finishedListeners) l(job);
    });
  }

  /** Decodes an event; null for this process's own and for anything malformed. */
  private decode(message: string): Job | null {
    let envelope: Envelope;
    try {
      envelope = JSON.parse(message) as Envelope;
    } catch {
      return null;
    }
    if (envelope.o === this.origin) return null;
    const job = decodeJob(envelope.j);
    if (!job) this.logger.warn('dropped a malformed job event');
    return job;
  }

  private resync(jobId: string): void {
    if (!this.local.has(jobId)) return;
    this.read(jobId).then(
      (job) => {
        if (job && this.local.has(jobId)) this.local.publish(job);
      },
      (err: unknown) => this.logger.warn({ err: errorMessage(err), jobId }, 'could not re-read a followed job'),
    );
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
