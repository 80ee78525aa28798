import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * What the scale-out section borrows from the shared PostgreSQL and Redis: a schema and a key
 * prefix of its own per run, named bench_scale_* and bench-scale-*, removed afterwards.
 */

export interface BenchSchema {
  name: string;
  /** DATABASE_URL for it: every connection made from it works in that schema (search_path). */
  url: string;
  drop(): Promise<void>;
}

export async function createSchema(baseUrl: string, label: string): Promise<BenchSchema> {
  const name = `bench_scale_${label}_${randomBytes(4).toString('hex')}`;
  await admin(baseUrl, `CREATE SCHEMA ${name}`);
  const url = new URL(baseUrl);
  url.searchParams.set('options', `-c search_path=${name}`);
  return { name, url: url.toString(), drop: () => admin(baseUrl, `DROP SCHEMA IF EXISTS ${name} CASCADE`) };
}

export const newPrefix = (label: string) => `bench-scale-${label}-${randomBytes(4).toString('hex')}`;

/** Deletes every key under the prefix (SCAN, not KEYS, so a shared Redis is not blocked). */
export async function removePrefix(redisUrl: string, prefix: string): Promise<number> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on('error', () => {}); // a failed command says why
  let removed = 0;
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) removed += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return removed;
}

/** Null when both answer; else why not (the section is then skipped, not failed). */
export async function unavailable(databaseUrl: string, redisUrl: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    return `no PostgreSQL answers at ${redact(databaseUrl)} (${(err as Error).message})`;
  } finally {
    await client.end().catch(() => {});
  }
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 0, lazyConnect: true, connectTimeout: 3_000, retryStrategy: () => null });
  redis.on('error', () => {}); // the failed connect() says why
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    return `no Redis answers at ${redact(redisUrl)} (${(err as Error).message})`;
  } finally {
    redis.disconnect();
  }
  return null;
}

async function admin(baseUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: baseUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable URL)';
  }
}
