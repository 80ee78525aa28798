import type { GenerationParams, JobMode } from '../generation/request.js';
import { pgCall, type PgPool } from '../storage/postgres.js';
import type { Job, JobImage, JobPatch, JobStatus } from './job.js';
import {
  decodeCursor,
  DuplicateIdempotencyKeyError,
  encodeCursor,
  type IdempotencyRecord,
  type JobListQuery,
  type JobPage,
  type JobStore,
  patchColumns,
} from './job-store.js';

interface JobRow {
  seq: string; // bigint: node-postgres returns it as text
  id: string;
  owner_id: string;
  mode: JobMode;
  status: JobStatus;
  params: GenerationParams; // json: parsed by node-postgres
  engine: string;
  engine_handle: string | null;
  progress_step: number | null;
  progress_total: number | null;
  engine_queue_position: number | null;
  requeues: number;
  images: JobImage[];
  error_code: string | null;
  error_message: string | null;
  version: number;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  idempotency_key: string | null;
  request_fingerprint: string | null;
  webhook_url: string | null;
}

function fromRow(row: JobRow): Job {
  return {
    id: row.id,
    ownerId: row.owner_id,
    mode: row.mode,
    status: row.status,
    params: row.params,
    engine: row.engine,
    engineHandle: row.engine_handle,
    progress:
      row.progress_step === null || row.progress_total === null ? null : { step: row.progress_step, totalSteps: row.progress_total },
    engineQueuePosition: row.engine_queue_position,
    requeues: row.requeues,
    webhookUrl: row.webhook_url,
    images: row.images,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    version: row.version,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

const PATCH_COLUMNS = patchColumns((d) => d ?? null);

const UNIQUE_VIOLATION = '23505';
const IDEMPOTENCY_INDEX = 'jobs_by_idempotency_key';

/**
 * Jobs in PostgreSQL (DATABASE_URL): the same behaviour as SqliteJobStore, for several processes
 * sharing one database. Each write is one statement, so it commits whole or not at all; the
 * guard against changing a finished job is in the UPDATE's WHERE, so it holds whichever process
 * writes. A server that cannot be reached makes every method reject with StorageUnavailableError.
 */
export class PgJobStore implements JobStore {
  constructor(private readonly pool: PgPool) {}

  async insert(job: Job, idempotency?: IdempotencyRecord): Promise<void> {
    try {
      await pgCall(() =>
        this.pool.query(
          `INSERT INTO jobs (id, owner_id, mode, status, params, engine, engine_handle, images, version, created_at,
                             idempotency_key, request_fingerprint, webhook_url)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
          [
            job.id,
            job.ownerId,
            job.mode,
            job.status,
            JSON.stringify(job.params),
            job.engine,
            job.engineHandle,
            JSON.stringify(job.images),
            job.version,
            job.createdAt,
            idempotency?.key ?? null,
            idempotency?.fingerprint ?? null,
            job.webhookUrl,
          ],
        ),
      );
    } catch (err) {
      const e = err as { code?: string; constraint?: string };
      if (idempotency && e.code === UNIQUE_VIOLATION && e.constraint === IDEMPOTENCY_INDEX) throw new DuplicateIdempotencyKeyError();
      throw err;
    }
  }

  async findByIdempotencyKey(ownerId: string, key: string): Promise<{ job: Job; fingerprint: string } | null> {
    const { rows } = await pgCall(() =>
      this.pool.query<JobRow>('SELECT * FROM jobs WHERE owner_id = $1 AND idempotency_key = $2', [ownerId, key]),
    );
    const row = rows[0];
    return row ? { job: fromRow(row), fingerprint: row.request_fingerprint ?? '' } : null;
  }

  async get(id: string): Promise<Job | null> {
    const { rows } = await pgCall(() => this.pool.query<JobRow>('SELECT * FROM jobs WHERE id = $1', [id]));
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async update(id: string, patch: JobPatch): Promise<Job | null> {
    const values: Record<string, unknown> = {};
    for (const key of Object.keys(patch) as (keyof JobPatch)[]) {
      if (patch[key] === undefined) continue;
      Object.assign(values, (PATCH_COLUMNS[key] as (v: unknown) => Record<string, unknown>)(patch[key]));
    }
    const columns = Object.keys(values).sort();
    const sets = [...columns.map((c, i) => `${c} = $${i + 2}`), 'version = version + 1'];
    const { rows } = await pgCall(() =>
      this.pool.query<JobRow>(
        `UPDATE jobs SET ${sets.join(', ')}
         WHERE id = $1 AND status NOT IN ('SUCCESS', 'FAILURE', 'CANCELED')
         RETURNING *`,
        [id, ...columns.map((c) => values[c])],
      ),
    );
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async listForOwner(ownerId: string, query: JobListQuery): Promise<JobPage> {
    const params: unknown[] = [ownerId];
    const where = ['owner_id = $1'];
    if (query.after) {
      params.push(decodeCursor(query.after));
      where.push(`seq < $${params.length}`);
    }
    if (query.status?.length) {
      params.push(query.status);
      where.push(`status = ANY($${params.length}::text[])`);
    }
    if (query.mode?.length) {
      params.push(query.mode);
      where.push(`mode = ANY($${params.length}::text[])`);
    }
    params.push(query.first + 1);
    const sql = `SELECT * FROM jobs WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT $${params.length}`;
    const { rows } = await pgCall(() => this.pool.query<JobRow>(sql, params));
    const page = rows.slice(0, query.first);
    return {
      edges: page.map((row) => ({ cursor: encodeCursor(Number(row.seq)), job: fromRow(row) })),
      hasNextPage: rows.length > query.first,
    };
  }

  /** SELECT 1 on a pooled connection: resolves while the server answers (for /readyz). */
  async ping(): Promise<void> {
    try {
      await this.pool.query('SELECT 1');
    } catch (err) {
      // /readyz shows the code only: Postgres's SQLSTATE or the socket's, else that it is unreachable.
      const code = (err as { code?: unknown }).code;
      throw Object.assign(new Error(`the database does not answer: ${(err as Error).message}`, { cause: err }), {
        code: typeof code === 'string' && code ? code : 'DATABASE_UNREACHABLE',
      });
    }
  }

  async listActive(): Promise<Job[]> {
    const { rows } = await pgCall(() =>
      this.pool.query<JobRow>(`SELECT * FROM jobs WHERE status IN ('PENDING', 'PROCESSING') ORDER BY seq`),
    );
    return rows.map(fromRow);
  }
}
