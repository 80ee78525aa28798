import type { GraphQLFormattedError } from 'graphql';

/** The command's exit status: what a script calling sd15 can rely on (documented in the usage text). */
export const ExitCode = {
  OK: 0,
  /** The job failed or was canceled; or the server could not be reached or failed: the command itself may be right. */
  FAILED: 1,
  /** Bad usage or input: the same command would fail again. */
  USAGE: 2,
  /** A second Ctrl-C: exited without waiting for the cancel (128 + SIGINT, as shells report it). */
  INTERRUPTED: 130,
} as const;

/** An error the command reports in one line (plus detail lines) on stderr, and exits with. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly details: readonly string[] = [],
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The command line itself is wrong (unknown option, missing prompt, unreadable --init file…). */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, ExitCode.USAGE);
    this.name = 'UsageError';
  }
}

/** No key, or the server refused it (HTTP 401 / UNAUTHENTICATED, WebSocket close 4401/4403). */
export class AuthError extends CliError {
  constructor(message: string) {
    super(message, ExitCode.USAGE);
    this.name = 'AuthError';
  }
}

/** No answer from the server (connection refused, DNS, time-out, or a reply that is not GraphQL). */
export class UnreachableError extends CliError {
  constructor(message: string) {
    super(message, ExitCode.FAILED);
    this.name = 'UnreachableError';
  }
}

/** One refused field, as the server's BAD_USER_INPUT errors carry it in extensions.issues. */
export interface FieldIssue {
  /** Dotted path from the operation's arguments, e.g. "input.numInferenceSteps". */
  field: string;
  code?: string;
  message: string;
}

/**
 * Error codes that mean the request itself was refused, so repeating it fails again: exit 2.
 * Every other code (INTERNAL_SERVER_ERROR, RATE_LIMITED, STORAGE_UNAVAILABLE…) is the server's
 * state, not the command's fault: exit 1.
 */
const REFUSAL_CODES = new Set(['BAD_USER_INPUT', 'GRAPHQL_VALIDATION_FAILED', 'NOT_FOUND', 'JOB_ALREADY_FINISHED', 'FORBIDDEN']);

/** The server answered an operation with GraphQL errors. */
export class ServerError extends CliError {
  readonly code: string | undefined;
  readonly issues: FieldIssue[];

  constructor(
    readonly errors: readonly GraphQLFormattedError[],
    httpStatus: number,
  ) {
    const first = errors[0];
    const code = typeof first?.extensions?.code === 'string' ? first.extensions.code : undefined;
    // graphql-js's own refusals (a variable that does not coerce, e.g. a seed beyond Int) carry
    // no code; yoga answers them with HTTP 400.
    const refused = (code !== undefined && REFUSAL_CODES.has(code)) || (code === undefined && httpStatus === 400);
    super(first?.message ?? `the server answered HTTP ${httpStatus} with an empty error list`, refused ? ExitCode.USAGE : ExitCode.FAILED);
    this.name = 'ServerError';
    this.code = code;
    this.issues = errors.flatMap((e) => readIssues(e.extensions?.issues));
  }
}

function readIssues(raw: unknown): FieldIssue[] {
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((item: unknown) => {
    if (typeof item !== 'object' || item === null) return [];
    const { field, path, code, message } = item as Record<string, unknown>;
    const name = typeof field === 'string' ? field : Array.isArray(path) ? path.join('.') : '?';
    return [{ field: name, code: typeof code === 'string' ? code : undefined, message: typeof message === 'string' ? message : 'refused' }];
  });
}
