import { Queue, type JobState } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueueConfig } from '../config.js';
import type { Job } from '../jobs/job.js';
import type { Logger } from '../logger.js';
import { redisOptions, watchConnection } from './redis-connection.js';

/** The BullMQ queue every API process adds to and every worker takes from. */
export const QUEUE_NAME = 'generation';

/** What a queued entry carries: the job's id names it; the job itself is read from the store. */
export interface QueuedJobData {
  ownerId: string;
  mode: string;
}

/** How long an add may take before the create answers anyway (the reconciler queues it later). */
const ADD_TIMEOUT_MS = 2_000;
/** How long a read of a job waits for its queue position before answering without one. */
const POSITION_TIMEOUT_MS = 250;
/** How long a scrape waits for the queue's counts. */
const DEPTH_TIMEOUT_MS = 1_000;

/**
 * The producer side of the queue. A queued entry's BullMQ id is the job's id, so adding a job
 * that is already there (waiting, running, or finished and kept) does nothing: the reconciler
 * and a retried create can add freely.
 */
export class JobQueue {
  private readonly queue: Queue<QueuedJobData, void, 'generate'>;

  constructor(
    private readonly config: QueueConfig,
    /** For the one read BullMQ has no call for: a job's place in the waiting list. */
    private readonly commands: Redis,
    logger: Logger,
  ) {
    this.queue = new Queue<QueuedJobData, void, 'generate'>(QUEUE_NAME, {
      connection: redisOptions(config.redisUrl, 'fail-fast', `${config.prefix}:producer`),
      prefix: config.prefix,
    });
    watchConnection(this.queue, 'producer', logger);
  }

  /** Rejects when Redis does not take it in time; the job is then still in the store, for the reconciler. */
  async add(job: Job): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const adding = this.queue.add(
      'generate',
      { ownerId: job.ownerId, mode: job.mode },
      {
        jobId: job.id,
        attempts: this.config.attempts,
        backoff: { type: 'exponential', delay: 1_000 },
        // Kept a while after the end, so a late add of the same job is still recognised.
        removeOnComplete: { age: 24 * 3600, count: 10_000 },
        removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
      },
    );
    adding.catch(() => {}); // when the timeout wins, its rejection is nobody's
    try {
      await Promise.race([
        adding,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`Redis did not take the job within ${ADD_TIMEOUT_MS} ms`)), ADD_TIMEOUT_MS);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Removes a waiting entry; false when there is none, or it is running (locked by its worker). */
  async remove(jobId: string): Promise<boolean> {
    return (await this.queue.remove(jobId)) === 1;
  }

  state(jobId: string): Promise<JobState | 'unknown'> {
    return this.queue.getJobState(jobId);
  }

  /** Why BullMQ failed the entry (its last error), if it did. */
  async failedReason(jobId: string): Promise<string | null> {
    const entry = await this.queue.getJob(jobId);
    return entry?.failedReason || null;
  }

  /**
   * Entries that start before this waiting one: workers take from the right end of the wait
   * list, so those to its right. Null when it is not waiting there (running, delayed, absent),
   * and when Redis does not answer at once: a read of a job never waits on Redis.
   */
  async position(jobId: string): Promise<number | null> {
    if (this.commands.status !== 'ready') return null;
    const key = this.queue.toKey('wait');
    const asking = Promise.all([this.commands.lpos(key, jobId), this.commands.llen(key)]);
    asking.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const answer = await Promise.race([
      asking,
      new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), POSITION_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!answer) return null;
    const [index, length] = answer;
    return index === null ? null : length - 1 - index;
  }

  /** Waiting entries, all keys together. */
  waitingCount(): Promise<number> {
    return this.queue.getWaitingCount();
  }

  /**
   * Entries not started yet, all keys together: waiting, prioritized, and delayed (a retry
   * waiting out its back-off), as BullMQ counts them. Rejects when Redis does not answer within
   * DEPTH_TIMEOUT_MS: a scrape of /metrics never waits on Redis.
   */
  async depth(): Promise<number> {
    const counting = this.queue.getJobCountByTypes('waiting', 'prioritized', 'delayed');
    counting.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        counting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`Redis did not count the queue within ${DEPTH_TIMEOUT_MS} ms`)), DEPTH_TIMEOUT_MS);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
