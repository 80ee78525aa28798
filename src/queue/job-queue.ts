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
  /** Set by a worker that could not read the job (the store unreachable): since when, and how often it waited. */
  storeAway?: { since: number; waits: number };
}

/** BullMQ's lowest priority (the largest number it takes). */
const LOWEST_PRIORITY = 2 ** 21;

/**
 * The queue's order between API keys. BullMQ's open-source queue has no fair groups (that is
 * BullMQ Pro), but it takes prioritized entries lowest number first, FIFO within a number. So
 * each entry's priority is the number of its owner's unfinished jobs up to and including it (at
 * create: the key's unfinished jobs, counted on Redis by the per-key cap; when the reconciler
 * re-adds: the job's rank among its owner's unfinished jobs in the store, oldest first, the same
 * rule). A key's first job gets 1 and overtakes any other key's backlog, whose jobs are at 2, 3,
 * 4 …; a key's jobs keep their own order. So a key that queues 100 jobs delays another key's
 * first job by the jobs running and the other keys' first jobs only: about one job per worker.
 *
 * What it does not do: priorities are fixed when added, so a backlog does not age. A key whose
 * 50 jobs have been waiting since its first 50 finished has its next one at 51, behind a newer
 * key's first 50. Entries a stalled worker lost go back to the wait list, which BullMQ takes
 * before every prioritized entry (taken over first); handed-back entries go to the front of
 * their priority.
 */
export function fairPriority(ownersUnfinished: number): number {
  return Math.min(LOWEST_PRIORITY, Math.max(1, Math.floor(ownersUnfinished)));
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

  /**
   * Rejects when Redis does not take it in time; the job is then still in the store, for the
   * reconciler. priority: fairPriority() of the owner's unfinished jobs.
   */
  async add(job: Job, priority: number): Promise<void> {
    const adding = this.queue.add(
      'generate',
      { ownerId: job.ownerId, mode: job.mode },
      {
        jobId: job.id,
        priority,
        attempts: this.config.attempts,
        backoff: { type: 'exponential', delay: 1_000 },
        // Kept a while after the end, so a late add of the same job is still recognised.
        removeOnComplete: { age: 24 * 3600, count: 10_000 },
        removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
      },
    );
    await withDeadline(adding, `Redis did not take the job within ${ADD_TIMEOUT_MS} ms`);
  }

  /**
   * Removes a waiting entry; false when there is none, or it is running (locked by its worker).
   * Rejects when Redis does not answer within two seconds (BullMQ would wait until it is back).
   */
  async remove(jobId: string): Promise<boolean> {
    return (await withDeadline(this.queue.remove(jobId), `Redis did not answer within ${ADD_TIMEOUT_MS} ms`)) === 1;
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
   * Entries that start before this waiting one: workers take the wait list first (entries
   * without a priority: those taken back from a lost worker), from its right end, then the
   * prioritized set in order. Null when it is not waiting (running, delayed, absent), and when
   * Redis does not answer at once: a read of a job never waits on Redis. (A key's first job
   * arriving later may still overtake it: see fairPriority.)
   */
  async position(jobId: string): Promise<number | null> {
    if (this.commands.status !== 'ready') return null;
    const key = this.queue.toKey('wait');
    const asking = Promise.all([
      this.commands.lpos(key, jobId),
      this.commands.llen(key),
      this.commands.zrank(this.queue.toKey('prioritized'), jobId),
    ]);
    asking.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const answer = await Promise.race([
      asking,
      new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), POSITION_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!answer) return null;
    const [index, length, rank] = answer;
    if (index !== null) return length - 1 - index;
    return rank === null ? null : length + rank;
  }

  /** Waiting entries (prioritized or not), all keys together. */
  async waitingCount(): Promise<number> {
    const counts = await this.queue.getJobCounts('waiting', 'prioritized');
    return (counts.waiting ?? 0) + (counts.prioritized ?? 0);
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

/** The promise's outcome, or a rejection with `message` after ADD_TIMEOUT_MS (a late outcome is dropped). */
async function withDeadline<T>(promise: Promise<T>, message: string): Promise<T> {
  promise.catch(() => {}); // when the deadline wins, its rejection is nobody's
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ADD_TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
