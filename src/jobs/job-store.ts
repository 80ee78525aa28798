import type Database from 'better-sqlite3';
import type { SqliteDatabase, WalSync } from '../storage/sqlite.js';
import { isStorageFault, StorageUnavailableError } from '../storage/storage-fault.js';
import { WriteBatcher } from '../storage/write-batcher.js';
import type { Job, JobImage, JobPatch, JobStatus } from './job.js';
import type { GenerationParams, JobMode } from '../generation/request.js';

/** A create's idempotency key and the fingerprint of its request, stored with the job. */
export interface IdempotencyRecord {
  key: string;
  fingerprint: string;
}

/**
 * Persistence of jobs: SqliteJobStore below, PgJobStore (pg-job-store.ts) with DATABASE_URL.
 * A resolved write is durable (on disk, or committed by the server).
 *
 * Invariant kept here, not by callers: a job in a terminal state never changes again.
 * Writes reject with StorageUnavailableError when the database cannot take them (the Postgres
 * store: any method, while its server cannot be reached).
 */
export interface JobStore {
  /** Rejects with DuplicateIdempotencyKeyError when the owner already used the key. */
  insert(job: Job, idempotency?: IdempotencyRecord): Promise<void>;
  /** The job an owner made with this idempotency key, and that request's fingerprint. */
  findByIdempotencyKey(ownerId: string, key: string): Promise<{ job: Job; fingerprint: string } | null>;
  get(id: string): Promise<Job | null>;
  /** Applies a patch to a job that is not terminal, bumping its version; null if it was. */
  update(id: string, patch: JobPatch): Promise<Job | null>;
  listForOwner(ownerId: string, query: JobListQuery): Promise<JobPage>;
  /** PENDING and PROCESSING jobs, oldest first: what the runner resumes after a restart. */
  listActive(): Promise<Job[]>;
  /** Resolves while the database answers (for /readyz); rejects with the reason otherwise. */
  ping(): Promise<void>;
}

export interface JobListQuery {
  status?: JobStatus[] | null;
  mode?: JobMode[] | null;
  first: number;
  /** Opaque cursor of the last job of the previous page. */
  after?: string | null;
}

export interface JobPage {
  edges: { cursor: string; job: Job }[];
  hasNextPage: boolean;
}

export class DuplicateIdempotencyKeyError extends Error {
  constructor() {
    super('a job with this idempotency key already exists');
    this.name = 'DuplicateIdempotencyKeyError';
  }
}

// Where every store's faults are told apart; here too, for the callers that know them from here.
export { isStorageFault, StorageUnavailableError };

export class InvalidCursorError extends Error {
  constructor() {
    super('the cursor is not one this server issued');
    this.name = 'InvalidCursorError';
  }
}

interface JobRow {
  seq: number;
  id: string;
  owner_id: string;
  mode: JobMode;
  status: JobStatus;
  params: string;
  engine: string;
  engine_handle: string | null;
  progress_step: number | null;
  progress_total: number | null;
  engine_queue_position: number | null;
  requeues: number;
  images: string;
  error_code: string | null;
  error_message: string | null;
  version: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  idempotency_key: string | null;
  request_fingerprint: string | null;
  webhook_url: string | null;
}

const toDate = (ms: number | null) => (ms === null ? null : new Date(ms));
const toMs = (d: Date | null | undefined) => (d ? d.getTime() : null);

function fromRow(row: JobRow): Job {
  return {
    id: row.id,
    ownerId: row.owner_id,
    mode: row.mode,
    status: row.status,
    params: JSON.parse(row.params) as GenerationParams,
    engine: row.engine,
    engineHandle: row.engine_handle,
    progress:
      row.progress_step === null || row.progress_total === null ? null : { step: row.progress_step, totalSteps: row.progress_total },
    engineQueuePosition: row.engine_queue_position,
    requeues: row.requeues,
    webhookUrl: row.webhook_url,
    images: JSON.parse(row.images) as JobImage[],
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    version: row.version,
    createdAt: new Date(row.created_at),
    startedAt: toDate(row.started_at),
    finishedAt: toDate(row.finished_at),
  };
}

/** A page's cursor: the job's place in creation order, the same form in every store. */
export const encodeCursor = (seq: number) => Buffer.from(`job:${seq}`).toString('base64url');
export function decodeCursor(cursor: string): number {
  const match = /^job:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw new InvalidCursorError();
  return Number(match[1]);
}

/**
 * Column for each patchable field, with its encoding; both stores share it and differ only in how
 * a time is stored (SQLite: epoch ms; Postgres: timestamptz).
 */
export function patchColumns(time: (d: Date | null | undefined) => unknown): {
  [K in keyof JobPatch]-?: (v: JobPatch[K]) => Record<string, unknown>;
} {
  return {
    status: (v) => ({ status: v }),
    engineHandle: (v) => ({ engine_handle: v }),
    progress: (v) => ({ progress_step: v?.step ?? null, progress_total: v?.totalSteps ?? null }),
    engineQueuePosition: (v) => ({ engine_queue_position: v }),
    requeues: (v) => ({ requeues: v }),
    images: (v) => ({ images: JSON.stringify(v ?? []) }),
    error: (v) => ({ error_code: v?.code ?? null, error_message: v?.message ?? null }),
    startedAt: (v) => ({ started_at: time(v) }),
    finishedAt: (v) => ({ finished_at: time(v) }),
  };
}

const PATCH_COLUMNS = patchColumns(toMs);

export class SqliteJobStore implements JobStore {
  private readonly insertStmt;
  private readonly getStmt;
  private readonly activeStmt;
  private readonly byIdempotencyStmt;
  private readonly pingStmt;
  private readonly updateStmts = new Map<string, ReturnType<SqliteDatabase['prepare']>>();
  /** At most 8 shapes (after x status filter x mode filter), so the cache stays tiny. */
  private readonly listStmts = new Map<string, Database.Statement<Record<string, unknown>, JobRow>>();

  private readonly writes: WriteBatcher;

  constructor(
    private readonly db: SqliteDatabase,
    walSync: WalSync,
  ) {
    this.writes = new WriteBatcher(db, walSync);
    this.insertStmt = db.prepare(
      `INSERT INTO jobs (id, owner_id, mode, status, params, engine, engine_handle, images, version, created_at,
                         idempotency_key, request_fingerprint, webhook_url)
       VALUES (@id, @owner_id, @mode, @status, @params, @engine, @engine_handle, @images, @version, @created_at,
               @idempotency_key, @request_fingerprint, @webhook_url)`,
    );
    this.byIdempotencyStmt = db.prepare<[string, string], JobRow>('SELECT * FROM jobs WHERE owner_id = ? AND idempotency_key = ?');
    this.getStmt = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?');
    this.activeStmt = db.prepare<[], JobRow>(`SELECT * FROM jobs WHERE status IN ('PENDING', 'PROCESSING') ORDER BY seq`);
    this.pingStmt = db.prepare('SELECT 1');
  }

  async insert(job: Job, idempotency?: IdempotencyRecord): Promise<void> {
    const row = {
      id: job.id,
      owner_id: job.ownerId,
      mode: job.mode,
      status: job.status,
      params: JSON.stringify(job.params),
      engine: job.engine,
      engine_handle: job.engineHandle,
      images: JSON.stringify(job.images),
      version: job.version,
      created_at: job.createdAt.getTime(),
      idempotency_key: idempotency?.key ?? null,
      request_fingerprint: idempotency?.fingerprint ?? null,
      webhook_url: job.webhookUrl,
    };
    try {
      await this.writes.run(() => this.insertStmt.run(row));
    } catch (err) {
      if (idempotency && (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new DuplicateIdempotencyKeyError();
      if (isStorageFault(err)) throw new StorageUnavailableError({ cause: err });
      throw err;
    }
  }

  async findByIdempotencyKey(ownerId: string, key: string): Promise<{ job: Job; fingerprint: string } | null> {
    const row = this.byIdempotencyStmt.get(ownerId, key);
    return row ? { job: fromRow(row), fingerprint: row.request_fingerprint ?? '' } : null;
  }

  async get(id: string): Promise<Job | null> {
    const row = this.getStmt.get(id);
    return row ? fromRow(row) : null;
  }

  async update(id: string, patch: JobPatch): Promise<Job | null> {
    const values: Record<string, unknown> = {};
    for (const key of Object.keys(patch) as (keyof JobPatch)[]) {
      if (patch[key] === undefined) continue;
      Object.assign(values, (PATCH_COLUMNS[key] as (v: unknown) => Record<string, unknown>)(patch[key]));
    }
    const columns = Object.keys(values).sort();
    const stmt = this.updateStatement(columns);
    const row = await this.writes.run(() => stmt.get({ ...values, id }) as JobRow | undefined);
    return row ? fromRow(row) : null;
  }

  async listForOwner(ownerId: string, query: JobListQuery): Promise<JobPage> {
    const where = ['owner_id = @owner'];
    const params: Record<string, unknown> = { owner: ownerId, limit: query.first + 1 };
    if (query.after) {
      where.push('seq < @after');
      params.after = decodeCursor(query.after);
    }
    // Filters are bound as JSON arrays so the statement text stays fixed and injection-free.
    if (query.status?.length) {
      where.push('status IN (SELECT value FROM json_each(@statuses))');
      params.statuses = JSON.stringify(query.status);
    }
    if (query.mode?.length) {
      where.push('mode IN (SELECT value FROM json_each(@modes))');
      params.modes = JSON.stringify(query.mode);
    }
    const sql = `SELECT * FROM jobs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT @limit`;
    let stmt = this.listStmts.get(sql);
    if (!stmt) {
      stmt = this.db.prepare<Record<string, unknown>, JobRow>(sql);
      this.listStmts.set(sql, stmt);
    }
    const rows = stmt.all(params);
    const page = rows.slice(0, query.first);
    return {
      edges: page.map((row) => ({ cursor: encodeCursor(row.seq), job: fromRow(row) })),
      hasNextPage: rows.length > query.first,
    };
  }

  async listActive(): Promise<Job[]> {
    return this.activeStmt.all().map(fromRow);
  }

  async ping(): Promise<void> {
    if (!this.db.open) throw Object.assign(new Error('the database is closed'), { code: 'DATABASE_CLOSED' });
    // A broken connection or file throws here, with SQLite's code.
    this.pingStmt.get();
  }

  /** Commits and syncs queued writes now (before the database closes). */
  flush(): Promise<void> {
    return this.writes.flush();
  }

  private updateStatement(columns: string[]) {
    const key = columns.join(',');
    let stmt = this.updateStmts.get(key);
    if (!stmt) {
      const sets = [...columns.map((c) => `${c} = @${c}`), 'version = version + 1'];
      stmt = this.db.prepare(
        `UPDATE jobs SET ${sets.join(', ')}
         WHERE id = @id AND status NOT IN ('SUCCESS', 'FAILURE', 'CANCELED')
         RETURNING *`,
      );
      this.updateStmts.set(key, stmt);
    }
    return stmt;
  }
}
