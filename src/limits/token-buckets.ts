/** A rate per key: take() spends one token, answering 0 when granted, else the ms until one is available. */
export interface RateLimiter {
  take(key: string): number | Promise<number>;
}

/**
 * Token buckets by key: each key may spend `burst` tokens at once, refilled at `perSecond`.
 * Pure bookkeeping with an injectable clock; memory is one small record per recently active key.
 */
export class TokenBuckets implements RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly burst: number,
    readonly perSecond: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Spends one token: 0 when granted, otherwise the milliseconds until one is available. */
  take(key: string): number {
    const now = this.clock();
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (this.buckets.size > 10_000) this.evictFull(now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) / this.perSecond) * 1000);
  }

  /** A bucket that has refilled completely carries no information: forget it. */
  private evictFull(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(key);
    }
  }
}
