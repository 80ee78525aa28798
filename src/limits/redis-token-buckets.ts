import { RedisScript, UNAVAILABLE, type LimitsRedis } from './limits-redis.js';
import type { RateLimiter, TokenBuckets } from './token-buckets.js';

/**
 * One token bucket, refilled and spent in one step on Redis (so replicas taking from the same
 * bucket at once never both get its last token), on Redis's clock (so replicas' clocks do not
 * matter). The bucket is a hash { tokens, at } that expires once it would have refilled
 * completely: a full bucket carries no information.
 *
 * KEYS[1] the bucket; ARGV: burst, tokens per millisecond, expiry (ms). Returns 0 when a token
 * was taken, else the milliseconds until one is available.
 */
const TAKE = new RedisScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait
`);

/**
 * Token buckets shared by every API replica (REDIS_URL): one Redis key per API key and bucket
 * (`<prefix>:limits:rate:<bucket>:<key id>`), with a TTL. Redis unreachable: fails open to this
 * replica's own buckets (so each replica then grants the rate on its own), with a log line.
 */
export class RedisTokenBuckets implements RateLimiter {
  private readonly ttlMs: number;

  constructor(
    private readonly shared: LimitsRedis,
    /** Which bucket of a key (one key may have several limits). */
    private readonly bucket: string,
    /** This replica's own buckets, with the same burst and rate: used while Redis cannot answer. */
    private readonly fallback: TokenBuckets,
  ) {
    // Time to refill an empty bucket, and a second more.
    this.ttlMs = Math.ceil((fallback.burst / fallback.perSecond) * 1000) + 1_000;
  }

  async take(key: string): Promise<number> {
    const wait = await this.shared.attempt('rate limits', 'each replica applies the rate on its own until it is back', (redis) =>
      TAKE.run(redis, [this.shared.key('rate', this.bucket, key)], [this.fallback.burst, this.fallback.perSecond / 1000, this.ttlMs]),
    );
    if (wait === UNAVAILABLE) return this.fallback.take(key);
    return Number(wait);
  }
}
