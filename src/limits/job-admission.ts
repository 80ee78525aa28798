import { ApiError } from '../errors.js';
import { TokenBuckets } from './token-buckets.js';

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
 */
export class JobAdmission {
  private readonly rate: TokenBuckets | null;
  /** Unfinished jobs per key. Sets, not counters, so a job reported finished twice counts once. */
  private readonly active = new Map<string, Set<string>>();

  constructor(
    private readonly limits: AdmissionLimits,
    clock: () => number = Date.now,
  ) {
    this.rate = limits.jobsPerMinute > 0 ? new TokenBuckets(limits.burst, limits.jobsPerMinute / 60, clock) : null;
  }

  /** Throws RateLimitedError when the key already has the most unfinished jobs allowed. */
  checkActiveCap(keyId: string): void {
    const cap = this.limits.maxActivePerKey;
    const active = this.active.get(keyId)?.size ?? 0;
    if (cap > 0 && active >= cap) {
      throw new RateLimitedError(
        `this API key has ${active} jobs waiting or running, the most allowed at once; wait for some to finish`,
        ACTIVE_CAP_RETRY_AFTER_S,
      );
    }
  }

  /** Throws RateLimitedError when the key is over its rate; otherwise counts one new job. */
  takeRateToken(keyId: string): void {
    const waitMs = this.rate?.take(keyId) ?? 0;
    if (waitMs > 0) {
      const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
      throw new RateLimitedError(
        `too many new jobs for this API key (at most ${this.limits.jobsPerMinute} a minute, ${this.limits.burst} at once); retry in ${retryAfter} s`,
        retryAfter,
      );
    }
  }

  started(keyId: string, jobId: string): void {
    let set = this.active.get(keyId);
    if (!set) this.active.set(keyId, (set = new Set()));
    set.add(jobId);
  }

  finished(keyId: string, jobId: string): void {
    const set = this.active.get(keyId);
    if (!set) return;
    set.delete(jobId);
    if (set.size === 0) this.active.delete(keyId);
  }
}
