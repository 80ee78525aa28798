import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';

/** What a limit gets when Redis cannot answer now: each limit decides what that means (see README). */
export const UNAVAILABLE = Symbol('redis unavailable');
export type Unavailable = typeof UNAVAILABLE;

/** How long a request waits on Redis for a limit before deciding without it. */
const DEFAULT_TIMEOUT_MS = 1_000;
/** A limit that cannot reach Redis says so at most this often. */
const LOG_EVERY_MS = 30_000;

/** A Lua script run by its SHA-1 (loaded on first use, and again after a Redis restart). */
export class RedisScript {
  private readonly sha: string;

  constructor(private readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}

/**
 * The Redis that holds the per-key limits shared by every API replica, under `<prefix>:limits:`.
 * Every call on a request's path goes through attempt(): it never waits for a connection that is
 * not up, nor longer than a second for an answer, and a failure is logged without flooding the
 * log; the caller then decides without Redis (UNAVAILABLE).
 */
export class LimitsRedis {
  private readonly lastLogged = new Map<string, number>();
  /** Whether the connection was ever up: until then, a call waits for the first connection (briefly). */
  private wasReady = false;

  constructor(
    readonly redis: Redis,
    private readonly prefix: string,
    private readonly logger: Logger,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
    private readonly clock: () => number = Date.now,
  ) {
    redis.on('ready', () => (this.wasReady = true));
  }

  /** A key of the limits: `<prefix>:limits:<part>:<part>…`. */
  key(...parts: string[]): string {
    return [this.prefix, 'limits', ...parts].join(':');
  }

  get ready(): boolean {
    return this.redis.status === 'ready';
  }

  /** Runs `fn`; UNAVAILABLE when the connection is down, the call fails, or it takes too long. */
  async attempt<T>(what: string, fallback: string, fn: (redis: Redis) => Promise<T>): Promise<T | Unavailable> {
    if (!this.ready && !this.wasReady && ['wait', 'connecting', 'connect'].includes(this.redis.status)) await this.firstConnection();
    if (!this.ready) {
      this.unavailable(what, fallback, `connection ${this.redis.status}`);
      return UNAVAILABLE;
    }
    let timer: NodeJS.Timeout | undefined;
    const call = fn(this.redis);
    call.catch(() => {}); // when the timeout wins, its rejection is nobody's
    try {
      return await Promise.race([
        call,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
    } catch (err) {
      this.unavailable(what, fallback, err instanceof Error ? err.message : String(err));
      return UNAVAILABLE;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves once the first connection is up or has failed, or after the timeout: a request just
   * after start finds the connection still being made.
   */
  private async firstConnection(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let settle: (() => void) | undefined;
    await new Promise<void>((resolve) => {
      settle = resolve;
      this.redis.once('ready', settle);
      this.redis.once('error', settle);
      timer = setTimeout(resolve, this.timeoutMs);
    });
    clearTimeout(timer);
    this.redis.off('ready', settle!);
    this.redis.off('error', settle!);
  }

  /** QUIT when connected (replies in flight arrive first); otherwise just drop the connection. */
  async close(): Promise<void> {
    if (this.redis.status === 'ready') await this.redis.quit().catch(() => this.redis.disconnect());
    else this.redis.disconnect();
  }

  /** Logs that a limit decides without Redis: the first time, then at most once every 30 s per limit. */
  unavailable(what: string, fallback: string, why: string): void {
    const now = this.clock();
    if (now - (this.lastLogged.get(what) ?? -Infinity) < LOG_EVERY_MS) return;
    this.lastLogged.set(what, now);
    this.logger.warn({ limit: what, err: why }, `redis unreachable for the shared ${what}: ${fallback}`);
  }
}
