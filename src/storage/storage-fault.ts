import { ApiError } from '../errors.js';

/**
 * What every store throws when its database cannot take the operation: the disk is full,
 * read-only or failing (SQLite), or the database server cannot be reached (Postgres). Callers
 * answer STORAGE_UNAVAILABLE (503 with Retry-After) and nothing was written.
 */
export class StorageUnavailableError extends Error {
  /** unwritable: the disk (SQLite); unreachable: the database server (Postgres). */
  readonly reason: 'unwritable' | 'unreachable';

  constructor(options: { cause: unknown; reason?: 'unwritable' | 'unreachable' }) {
    const reason = options.reason ?? 'unwritable';
    super(reason === 'unwritable' ? 'the job store cannot be written' : 'the database cannot be reached', { cause: options.cause });
    this.name = 'StorageUnavailableError';
    this.reason = reason;
  }
}

/** SQLite's and the file system's codes for a disk that cannot take writes. */
const DISK_FAULT = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN)|^(ENOSPC|EIO|EROFS|EDQUOT)$/;

/**
 * A database server that cannot be reached or cannot serve now: socket errors, and Postgres's
 * SQLSTATEs for a lost connection (class 08), a server shutting down or starting (57P01-57P03),
 * too many connections and other exhausted resources (class 53), a read-only standby (25006).
 */
const CONNECTION_FAULT =
  /^(ECONNREFUSED|ECONNRESET|ECONNABORTED|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|ENETDOWN|EAI_AGAIN|ENOTFOUND)$|^08...$|^57P0[123]$|^53...$|^25006$/;

/** node-postgres's own errors for a connection that is gone or never came (they carry no code). */
const PG_CONNECTION_MESSAGE =
  /timeout exceeded when trying to connect|Connection terminated|connection error and is not queryable|Client was closed and is not queryable|Query read timeout|Connection timeout/i;

const codeOf = (err: unknown) => String((err as { code?: unknown } | null)?.code ?? '');

/** The database cannot take the operation: its disk (SQLite), or its server's connection (Postgres). */
export function isStorageFault(err: unknown): boolean {
  return DISK_FAULT.test(codeOf(err)) || isConnectionFault(err);
}

/** The database server cannot be reached or cannot serve now (retrying later may succeed). */
export function isConnectionFault(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (CONNECTION_FAULT.test(codeOf(err))) return true;
  // A host name with several addresses fails with one error per address.
  if (err instanceof AggregateError && err.errors.some((e) => isConnectionFault(e))) return true;
  return PG_CONNECTION_MESSAGE.test(err.message);
}

/**
 * What a caller is told when the database cannot take its request (nothing was changed):
 * STORAGE_UNAVAILABLE, 503 with Retry-After. doing: what could not be done ("record new jobs");
 * outcome: what that means for the request ("nothing was created").
 */
export function storageUnavailableAnswer(err: StorageUnavailableError, doing = 'answer this request', outcome?: string): ApiError {
  const why = err.reason === 'unwritable' ? 'its storage is full or not writable' : 'its database cannot be reached';
  const message = `the server cannot ${doing} right now (${why}); ${outcome ? `${outcome}, ` : ''}retry later`;
  return new ApiError('STORAGE_UNAVAILABLE', message, 503, {
    retryAfter: err.reason === 'unwritable' ? 30 : 5,
  });
}
