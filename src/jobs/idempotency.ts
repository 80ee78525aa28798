import { createHash } from 'node:crypto';
import type { GenerationParams, JobMode } from '../generation/request.js';
import type { FieldIssue } from '../generation/input.js';

/**
 * Idempotency keys: a client that repeats a create with the same key (a retry after a timeout,
 * say) gets the job the first request made instead of a second one. Pure helpers here; the
 * lookup and the unique index live in the store.
 */

export const IDEMPOTENCY_KEY_MAX_LENGTH = 255;

/** Checks a client's key: 1 to 255 visible ASCII characters (what HTTP headers can carry). */
export function checkIdempotencyKey(key: string): FieldIssue | null {
  if (key.length === 0 || key.length > IDEMPOTENCY_KEY_MAX_LENGTH || !/^[\x21-\x7e]+$/.test(key)) {
    return {
      path: ['idempotencyKey'],
      code: 'INVALID_VALUE',
      message: `must be 1 to ${IDEMPOTENCY_KEY_MAX_LENGTH} visible ASCII characters`,
    };
  }
  return null;
}

/**
 * What makes two requests "the same": the mode and the validated parameters, so GraphQL's
 * defaults and REST's missing fields compare equal. A random seed (none given) counts as "any".
 */
export function requestFingerprint(
  mode: JobMode,
  params: GenerationParams,
  seedWasGiven: boolean,
  webhookUrl: string | null = null,
): string {
  const canonical = JSON.stringify({ mode, ...sortKeys(params), seed: seedWasGiven ? params.seed : null, webhookUrl });
  return createHash('sha256').update(canonical).digest('hex');
}

function sortKeys(params: GenerationParams): Record<string, unknown> {
  const record = params as unknown as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(record)
      .sort()
      .filter((k) => record[k] !== undefined)
      .map((k) => [k, record[k]]),
  );
}
