/**
 * Helpers for the queue tests (REDIS_URL): the real Redis (REDIS_URL, default 127.0.0.1:6379)
 * under a prefix of each test file's own, removed afterwards; API servers and workers sharing one
 * store (Postgres in a schema of their own, or the SQLite file on one machine); worker processes
 * run as operators run them (npm run worker's src/worker.ts); and a private redis-server for the
 * tests that stop Redis.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config.js';
import { SqliteJobStore, type JobStore } from '../../src/jobs/job-store.js';
import { PgJobStore } from '../../src/jobs/pg-job-store.js';
import { createPgPool } from '../../src/storage/postgres.js';
import { openDatabase, WalSync } from '../../src/storage/sqlite.js';
import { buildWorker, type WorkerApp } from '../../src/worker-app.js';
import { freePort } from './crash-harness.js';
import { createTestSchema } from './postgres.js';

/** The test Redis: REDIS_URL (moved to TEST_REDIS_URL by env-setup.ts), by default the local one. */
export const REDIS_URL = process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A prefix of this file's own, so test files (and runs) sharing the Redis never meet. */
export function testPrefix(file: string): string {
  return `test-${file}-${randomBytes(4).toString('hex')}`;
}

/** The record API processes and workers share, as the tests point them at it and read it themselves. */
export interface SharedStore {
  kind: 'postgres' | 'sqlite';
  /** The environment that points an API server or a worker at it. */
  env: Record<string, string>;
  /** The job store opened by the test itself (to plant or read jobs behind the API's back). */
  open(): { store: JobStore; close(): Promise<void> };
  /** Removes it: the Postgres schema (a SQLite file goes with its DATA_DIR). */
  drop(): Promise<void>;
}

/**
 * Postgres (the test PostgreSQL, DATABASE_URL or 127.0.0.1:5432/test), in a schema of its own
 * named after the test file (label): what API replicas and workers on several machines share.
 * The servers apply the migrations when they start.
 */
export async function sharedPostgres(label: string): Promise<SharedStore> {
  const schema = await createTestSchema(label);
  return {
    kind: 'postgres',
    env: { DATABASE_URL: schema.url },
    open() {
      const pool = createPgPool(schema.url);
      return { store: new PgJobStore(pool), close: () => pool.end() };
    },
    drop: () => schema.drop(),
  };
}

/**
 * The SQLite file in one DATA_DIR, in WAL mode: API processes and workers on one machine only
 * (REDIS_URL without DATABASE_URL).
 */
export function sharedSqlite(dataDir: string): SharedStore {
  return {
    kind: 'sqlite',
    env: { DATA_DIR: dataDir },
    open() {
      const file = path.join(dataDir, 'sd-api.sqlite');
      const db = openDatabase(file);
      const walSync = new WalSync(file, false);
      const store = new SqliteJobStore(db, walSync);
      return {
        store,
        async close() {
          await store.flush();
          walSync.close();
          db.close();
        },
      };
    },
    drop: async () => {},
  };
}

export function newDataDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'sd-api-queue-test-'));
}

/**
 * The env of a queue test's API server or worker: the local engine on the tiny models (built in
 * DATA_DIR by the first server), the shared store, fast queue timings.
 */
export function queueEnv(prefix: string, dataDir: string, shared: SharedStore, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ENGINE: 'local',
    POLL_MIN_INTERVAL_MS: '5',
    POLL_MAX_INTERVAL_MS: '20',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    REDIS_URL,
    REDIS_PREFIX: prefix,
    RATE_LIMIT_JOBS_BURST: '1000',
    WORKER_LOCK_MS: '2000',
    WORKER_STALLED_INTERVAL_MS: '1000',
    QUEUE_RECONCILE_INTERVAL_MS: '500',
    DATA_DIR: dataDir,
    ...shared.env,
    ...extra,
  };
}

/** A worker in this process (buildWorker, as npm run worker wires it). */
export async function startWorker(env: Record<string, string>): Promise<WorkerApp> {
  const worker = await buildWorker(loadConfig(env));
  await worker.start();
  return worker;
}

/** Deletes every key under the prefix (SCAN, not KEYS, so a shared Redis is not blocked). */
export async function removePrefix(prefix: string, url = REDIS_URL): Promise<number> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  let removed = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) removed += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// Worker processes

export interface WorkerProcess {
  child: ChildProcess;
  /** Resolves once it printed that it pulls jobs. */
  ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
  /** Its JSON log lines (LOG_LEVEL info or lower). */
  logs(): { msg?: string; jobId?: string; level?: number; [k: string]: unknown }[];
}

export function startWorkerProcess(env: Record<string, string>, startTimeoutMs = 30_000): WorkerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/worker.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not start: ${output}`)), startTimeoutMs);
    const check = () => {
      if (output.includes('Worker pulling jobs')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`the worker exited (${code}) before starting: ${output}`));
    });
  });
  ready.catch(() => {});
  return {
    child,
    ready,
    exited,
    output: () => output,
    logs: () =>
      output
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as { msg?: string; jobId?: string }];
          } catch {
            return [];
          }
        }),
  };
}

/** SIGKILL (nothing runs in it after) and wait for the exit. */
export async function killProcess(proc: { child: ChildProcess; exited: Promise<unknown> }, signal: NodeJS.Signals = 'SIGKILL') {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill(signal);
  await proc.exited;
}

// ---------------------------------------------------------------------------------------------
// A private Redis, for the tests that stop it (never the shared one)

export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';
export const haveRedisServer = existsSync(REDIS_SERVER);

export class PrivateRedis {
  private proc: ChildProcess | null = null;
  readonly url: string;

  constructor(readonly port: number) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  static async create(): Promise<PrivateRedis> {
    return new PrivateRedis(await freePort());
  }

  /** Starts it with no persistence: a restart loses everything, the worst case for the queue. */
  async start(): Promise<void> {
    if (this.proc) return;
    const proc = spawn(REDIS_SERVER, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start on port ${this.port}: ${output}`)), 10_000);
      proc.stdout!.on('data', (d: Buffer) => {
        output += d.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${output}`));
      });
    });
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  }
}
