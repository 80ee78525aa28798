import { ApiError } from '../errors.js';
import { InMemoryActiveJobs, type ActiveJobs, type OwnedJob, type StoredState } from './active-jobs.js';
import { TokenBuckets, type RateLimiter } from './token-buckets.js';

export interface AdmissionLimits {
  /** New jobs per key per minute, sustained; 0: no rate limit. */
  jobsPerMinute: number;
  /** New jobs a key may create at once before the rate applies. */
  burst: number;
  /** Jobs a key may have waiting or running at once; 0: no cap. */
  maxActivePerKey: number;
}

/** How long a caller turned away by the active-jobs cap is told to wait: jobs take seconds. */
const ACTIVE_CAP_RETRY_AFTER_S = 5;

export class RateLimitedError extends ApiError {
  constructor(message: string, retryAfterSeconds: number) {
    super('RATE_LIMITED', message, 429, { retryAfter: retryAfterSeconds });
    this.name = 'RateLimitedError';
  }
}

/**
 * Whether a key may create another job now: a per-key rate (token bucket) and a per-key cap on
 * jobs not yet finished, so that one key cannot fill the queue for everyone. Shared by GraphQL
 * and REST because both create jobs through the job service.
 *
 * Where the state lives is behind two small interfaces: in this process's memory (the embedded
 * default), or on Redis for API replicas that share it (app.ts wires RedisTokenBuckets and
 * RedisActiveJobs when REDIS_URL is set).
 */
export class JobAdmission {
  private readonly rate: RateLimiter | null;
  private readonly active: ActiveJobs;

  constructor(
    private readonly limits: AdmissionLimits,
    backends: {
      /** The rate's buckets; default: in this process (none when jobsPerMinute is 0). */
      rate?: RateLimiter | null;
      /** The record of unfinished jobs; default: in this process. */
      active?: ActiveJobs;
      clock?: () => number;
    } = {},
  ) {
    this.rate =
      backends.rate !== undefined
        ? backends.rate
        : limits.jobsPerMinute > 0
          ? new TokenBuckets(limits.burst, limits.jobsPerMinute / 60, backends.clock)
          : null;
    this.active = backends.active ?? new InMemoryActiveJobs();
  }

  /**
   * Counts a job about to be created among its key's unfinished ones; throws RateLimitedError
   * (counting nothing) when the key already has the most allowed. A create that then fails
   * must call finished().
   */
  async reserve(keyId: string, jobId: string): Promise<void> {
    const cap = this.limits.maxActivePerKey;
    const { admitted, count } = await this.active.reserve(keyId, jobId, cap);
    if (!admitted) {
      throw new RateLimitedError(
        `this API key has ${count} jobs waiting or running, the most allowed at once; wait for some to finish`,
        ACTIVE_CAP_RETRY_AFTER_S,
      );
    }
  }

  /** Throws RateLimitedError when the key is over its rate; otherwise counts one new job. */
  async takeRateToken(keyId: string): Promise<void> {
    const waitMs = (await this.rate?.take(keyId)) ?? 0;
    if (waitMs > 0) {
      const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
      throw new RateLimitedError(
        `too many new jobs for this API key (at most ${this.limits.jobsPerMinute} a minute, ${this.limits.burst} at once); retry in ${retryAfter} s`,
        retryAfter,
      );
    }
  }

  /** The job ended, or its create failed: it no longer counts. */
  finished(keyId: string, jobId: string): void {
    this.active.release(keyId, jobId);
  }

  /** The key's unfinished jobs now (null: unknown), for the queue's order between keys. */
  unfinishedCount(keyId: string): Promise<number | null> {
    return this.active.count(keyId);
  }

  /** Makes the record of unfinished jobs agree with the store's (at start, and on each reconciling pass). */
  reconcile(active: readonly OwnedJob[], read: (jobId: string) => Promise<StoredState>): Promise<void> {
    return this.active.reconcile(active, read);
  }
}
