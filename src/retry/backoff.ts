/**
 * Exponential back-off, the one implementation: the delay before retry number `attempt` (0 for
 * the first) is baseMs · 2^attempt, at most maxMs, with optional jitter so that many clients
 * failing together do not retry in step ("full": anywhere in [0, delay); "equal": in
 * [delay/2, delay)).
 */
export interface Backoff {
  baseMs: number;
  maxMs?: number;
  jitter?: 'none' | 'full' | 'equal';
}

export function backoffDelay(attempt: number, { baseMs, maxMs = Infinity, jitter = 'none' }: Backoff, random = Math.random): number {
  const delay = Math.min(maxMs, baseMs * 2 ** attempt);
  switch (jitter) {
    case 'none':
      return delay;
    case 'full':
      return random() * delay;
    case 'equal':
      return delay / 2 + random() * (delay / 2);
  }
}
