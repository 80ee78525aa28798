import type { JobFieldsFragment, JobStatus } from '../../src/client/generated/graphql.js';
import type { Mode } from './inputs.js';

/**
 * What the soak saw: every accepted job (to be verified at the end, so none can be lost
 * unnoticed), errors counted by code, and problems. Expected errors (refused input, limits,
 * canceling a finished job) are figures; anything else is UNEXPECTED and must be 0.
 */

export const TERMINAL = new Set<JobStatus>(['SUCCESS', 'FAILURE', 'CANCELED'] as JobStatus[]);

export interface JobRec {
  id: string;
  key: number;
  via: 'graphql' | 'rest' | 'burst' | 'storm';
  mode: Mode;
  samples: number;
  expectImageUnavailable: boolean;
  cancelAnswered?: JobStatus;
  /** The last state a subscription that ran to its end saw, and a REST poll's final status. */
  subscriptionFinal?: JobStatus;
  restFinal?: string;
  final?: JobFieldsFragment;
}

export interface GqlError {
  message: string;
  extensions?: { code?: string; retryAfter?: number };
}

export const EXPECTED_GRAPHQL = new Set(['BAD_USER_INPUT', 'RATE_LIMITED', 'JOB_ALREADY_FINISHED']);

/** A RATE_LIMITED message says which limit it was: shown with the code. */
export function limitKind(message: string): string {
  if (/waiting or running/.test(message)) return ' (active jobs cap)';
  if (/new jobs/.test(message)) return ' (rate)';
  if (/subscriptions open/.test(message)) return ' (subscriptions cap)';
  return '';
}

export class Ledger {
  readonly jobs = new Map<string, JobRec>();
  readonly errors = new Map<string, number>();
  readonly unexpected = new Map<string, number>();
  readonly unexpectedSamples: string[] = [];
  readonly counters = new Map<string, number>();
  readonly acceptLatencies: number[] = [];

  count(name: string, n = 1) {
    this.counters.set(name, (this.counters.get(name) ?? 0) + n);
  }

  /** An error answer by its code; expected ones are figures, the rest are problems. */
  error(code: string, expected: boolean, detail = '') {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
    if (!expected) this.problem(code, detail);
  }

  problem(what: string, detail = '') {
    this.unexpected.set(what, (this.unexpected.get(what) ?? 0) + 1);
    if (this.unexpectedSamples.length < 12) this.unexpectedSamples.push(`${what}${detail ? `: ${detail.slice(0, 300)}` : ''}`);
  }

  /** Records a GraphQL error answer by code; returns its Retry-After in seconds, if any. */
  gqlError(e: GqlError, expectedCodes: Set<string>, detail: string): number | null {
    const code = e.extensions?.code ?? 'NO_CODE';
    this.error(`GraphQL ${code}${code === 'RATE_LIMITED' ? limitKind(e.message) : ''}`, expectedCodes.has(code), `${detail}: ${e.message}`);
    return code === 'RATE_LIMITED' ? (e.extensions?.retryAfter ?? 1) : null;
  }

  /** A job the server accepted (a PENDING answer with an id): it must be found terminal at the end. */
  accept(id: string, key: number, via: JobRec['via'], mode: Mode, samples: number, expectImageUnavailable = false): JobRec {
    const rec: JobRec = { id, key, via, mode, samples, expectImageUnavailable };
    if (this.jobs.has(id)) this.problem('job id answered twice', id);
    this.jobs.set(id, rec);
    return rec;
  }
}
