import type { ActiveJobs, OwnedJob, StoredState } from './active-jobs.js';
import { RedisScript, UNAVAILABLE, type LimitsRedis } from './limits-redis.js';

/** Redis's clock in milliseconds, inside a script. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * KEYS[1] the key's sorted set of unfinished jobs (scored by when they were counted), KEYS[2]
 * the set of keys that have one; ARGV: job id, cap (0: none), key id. Returns { admitted (0|1),
 * count }. The check and the add are one step, so replicas admitting at once never pass the cap.
 */
const RESERVE = new RedisScript(`
local n = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1, n} end
local cap = tonumber(ARGV[2])
if cap > 0 and n >= cap then return {0, n} end
${NOW}
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
return {1, n + 1}
`);

/** KEYS as RESERVE; ARGV: job id, key id. An emptied set is deleted, and its key leaves the index. */
const RELEASE = new RedisScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
return 1
`);

/** KEYS as RESERVE; ARGV: job id, key id. Adds a job the store has unfinished (unless it is there). */
const RESTORE = new RedisScript(`
${NOW}
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
`);

/** KEYS as RESERVE; ARGV: key id. Takes a key out of the index if its set is empty (a create may have just added to it). */
const DROP_IF_EMPTY = new RedisScript(`
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return 1
`);

/**
 * A job counted but missing from the store is a create still on its way (counted before its
 * insert) for this long; after it, one that failed without releasing.
 */
const MISSING_GRACE_MS = 60_000;

/**
 * The unfinished jobs of each key on Redis, shared by every API replica (REDIS_URL): a sorted
 * set per key, `<prefix>:limits:active:<key id>`, with the keys that have one in
 * `<prefix>:limits:active-keys`. A create counts its job before inserting it (atomically
 * against the cap) and uncounts it if the create fails; every replica uncounts a job when it
 * hears of its end (the workers' `finished` announcements, its own cancels).
 *
 * The store stays the source of truth: each reconciling pass compares the sets with the store's
 * unfinished jobs, uncounting what ended unheard (a replica that was down or cut off when the
 * end was announced) and counting what was created while Redis was away. Releases that fail
 * are retried on the next pass.
 *
 * Redis unreachable: the cap is checked against the store's count of the key's unfinished
 * jobs instead (never more lenient than the store; creates racing each other may then pass the
 * cap by the few in flight).
 */
export class RedisActiveJobs implements ActiveJobs {
  private readonly index: string;
  /** Releases that failed (Redis away): retried on the next pass and when the connection is back. */
  private readonly unreleased = new Map<string, string>();

  constructor(
    private readonly shared: LimitsRedis,
    /** The store's count of a key's unfinished jobs, counting up to atMost (for when Redis cannot answer). */
    private readonly countInStore: (keyId: string, atMost: number) => Promise<number>,
  ) {
    this.index = shared.key('active-keys');
    shared.redis.on('ready', () => void this.retryReleases());
  }

  private setOf(keyId: string): string {
    return this.shared.key('active', keyId);
  }

  async reserve(keyId: string, jobId: string, cap: number): Promise<{ admitted: boolean; count: number }> {
    const reply = await this.shared.attempt('cap on unfinished jobs', 'checked against the store until it is back', (redis) =>
      RESERVE.run(redis, [this.setOf(keyId), this.index], [jobId, cap, keyId]),
    );
    if (reply !== UNAVAILABLE) {
      const [admitted, count] = reply as [number, number];
      return { admitted: admitted === 1, count };
    }
    if (cap === 0) return { admitted: true, count: 1 };
    const stored = await this.countInStore(keyId, cap);
    return stored >= cap ? { admitted: false, count: stored } : { admitted: true, count: stored + 1 };
  }

  release(keyId: string, jobId: string): void {
    this.unreleased.delete(jobId);
    void this.shared
      .attempt('cap on unfinished jobs', 'the release is retried', (redis) =>
        RELEASE.run(redis, [this.setOf(keyId), this.index], [jobId, keyId]),
      )
      .then((reply) => {
        if (reply === UNAVAILABLE) this.unreleased.set(jobId, keyId);
      });
  }

  async count(keyId: string): Promise<number | null> {
    const n = await this.shared.attempt('cap on unfinished jobs', 'counted later', (redis) => redis.zcard(this.setOf(keyId)));
    return n === UNAVAILABLE ? null : n;
  }

  async reconcile(active: readonly OwnedJob[], read: (jobId: string) => Promise<StoredState>): Promise<void> {
    if (!this.shared.ready) return;
    await this.retryReleases();
    const redis = this.shared.redis;
    const listed = new Map<string, Set<string>>();
    for (const job of active) {
      let ids = listed.get(job.ownerId);
      if (!ids) listed.set(job.ownerId, (ids = new Set()));
      ids.add(job.id);
    }
    const [seconds, micros] = await redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const owners = new Set([...(await redis.smembers(this.index)), ...listed.keys()]);
    for (const keyId of owners) {
      const ids = listed.get(keyId) ?? new Set<string>();
      const flat = await redis.zrange(this.setOf(keyId), '0', '-1', 'WITHSCORES');
      const counted = new Map<string, number>();
      for (let i = 0; i < flat.length; i += 2) counted.set(flat[i]!, Number(flat[i + 1]));
      for (const [jobId, since] of counted) {
        if (ids.has(jobId)) continue;
        // Not listed as unfinished: created since the listing, or ended without being heard of.
        const state = await read(jobId);
        if (state === 'finished' || (state === 'missing' && now - since > MISSING_GRACE_MS)) {
          await RELEASE.run(redis, [this.setOf(keyId), this.index], [jobId, keyId]);
        }
      }
      for (const jobId of ids) {
        // Read again: it may have ended (and been released) since the listing.
        if (!counted.has(jobId) && (await read(jobId)) === 'unfinished') {
          await RESTORE.run(redis, [this.setOf(keyId), this.index], [jobId, keyId]);
        }
      }
      if (counted.size === 0 && ids.size === 0) await DROP_IF_EMPTY.run(redis, [this.setOf(keyId), this.index], [keyId]);
    }
  }

  private async retryReleases(): Promise<void> {
    for (const [jobId, keyId] of [...this.unreleased]) {
      const reply = await this.shared.attempt('cap on unfinished jobs', 'the release is retried', (redis) =>
        RELEASE.run(redis, [this.setOf(keyId), this.index], [jobId, keyId]),
      );
      if (reply === UNAVAILABLE) return;
      this.unreleased.delete(jobId);
    }
  }
}
