import type { RedisOptions as BullRedisOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../logger.js';

/**
 * Reconnects forever, by itself: at once, then after 0.2, 0.4, 0.8 … seconds, at most 2 s
 * apart, so a restarted Redis is found again within about two seconds.
 */
export function retryStrategy(times: number): number {
  return Math.min(100 * 2 ** Math.min(times, 5), 2_000);
}

export type RedisRole = 'wait' | 'fail-fast';

/**
 * Connection options for one role. 'wait': a command waits across an outage until Redis is back
 * (maxRetriesPerRequest: null, as BullMQ requires of a worker's connections; the pub/sub ones
 * too). 'fail-fast': a command waiting for the connection fails after one reconnection attempt,
 * and the producer gives an add at most two seconds (JobQueue.add), so that an API request never
 * waits long on Redis: the reconciler queues what could not be queued.
 */
function baseOptions(role: RedisRole, name: string) {
  return {
    connectionName: name,
    retryStrategy,
    maxRetriesPerRequest: role === 'wait' ? null : 1,
    connectTimeout: 5_000,
  };
}

/** For BullMQ, which makes its own connections from these. */
export function redisOptions(url: string, role: RedisRole, name: string): BullRedisOptions & { url: string } {
  return { url, ...baseOptions(role, name) };
}

/** An ioredis client whose errors are logged without flooding the log (watchConnection). */
export function connectRedis(url: string, role: RedisRole, name: string, logger: Logger, extra: RedisOptions = {}): Redis {
  const client = new Redis(url, { ...baseOptions(role, name), ...extra });
  watchConnection(client, name, logger);
  return client;
}

interface Watchable {
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'ready', listener: () => void): unknown;
}

/**
 * Logs a connection's errors without flooding the log while Redis is away: the first of an
 * outage, then at most one every 30 s, and the connection coming back.
 */
export function watchConnection(emitter: Watchable, name: string, logger: Logger, clock: () => number = Date.now): void {
  let lastLogged = -Infinity;
  let failing = false;
  emitter.on('error', (err: Error) => {
    const now = clock();
    failing = true;
    if (now - lastLogged < 30_000) return;
    lastLogged = now;
    logger.warn({ connection: name, err: err.message }, 'redis unreachable; reconnecting');
  });
  emitter.on('ready', () => {
    if (!failing) return;
    failing = false;
    lastLogged = -Infinity;
    logger.info({ connection: name }, 'redis reachable again');
  });
}
