import { Pool } from 'undici';

/**
 * Closed-loop HTTP load: `concurrency` workers, each sending its next request as soon as the
 * previous one is answered, over an undici Pool with as many keep-alive connections. Requests
 * completed during the warm-up are checked but not counted; the window that counts starts when
 * the warm-up ends and lasts durationMs.
 */

export interface LoadOptions {
  origin: string;
  path: string;
  headers: Record<string, string>;
  /** The request body for the i-th request. */
  body: (i: number) => string;
  /** Returns null if the reply is right, else what is wrong with it. */
  check: (i: number, statusCode: number, text: string) => string | null;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** Called when the measured window opens and closes (to sample the servers' CPU). */
  onWindow?: (edge: 'open' | 'close') => Promise<void> | void;
}

export interface LoadResult {
  /** Correct replies completed in the measured window. */
  ok: number;
  /** Wrong replies or failed requests in the measured window. */
  errors: number;
  /** Wrong replies during the warm-up (reported, not counted). */
  warmupErrors: number;
  warmupOk: number;
  /** Correct replies per second in the measured window. */
  rps: number;
  /** Latencies (ms) of the correct replies in the window. */
  latencies: Float64Array;
  errorSamples: string[];
  windowMs: number;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(o.origin, { connections: o.concurrency, pipelining: 1, keepAliveTimeout: 30_000 });
  const latencies: number[] = [];
  const errorSamples: string[] = [];
  let ok = 0;
  let errors = 0;
  let warmupOk = 0;
  let warmupErrors = 0;
  let counting = false;
  let stopped = false;
  let next = 0;

  const note = (problem: string) => {
    if (counting) errors++;
    else warmupErrors++;
    if (errorSamples.length < 5) errorSamples.push(problem);
  };

  const worker = async () => {
    while (!stopped) {
      const i = next++;
      const started = performance.now();
      try {
        const res = await pool.request({ path: o.path, method: 'POST', headers: o.headers, body: o.body(i) });
        const text = await res.body.text();
        const problem = o.check(i, res.statusCode, text);
        if (stopped) break; // finished after the window closed: not counted either way
        const wasCounting = counting;
        if (problem) note(problem);
        else if (wasCounting && started >= windowOpenedAt) {
          ok++;
          latencies.push(performance.now() - started);
        } else if (wasCounting) ok++;
        else warmupOk++;
      } catch (err) {
        if (stopped) break;
        note(`request failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  };

  let windowOpenedAt = Infinity;
  const workers = Array.from({ length: o.concurrency }, () => worker());
  await sleep(o.warmupMs);
  await o.onWindow?.('open');
  windowOpenedAt = performance.now();
  counting = true;
  await sleep(o.durationMs);
  stopped = true;
  const windowMs = performance.now() - windowOpenedAt;
  await o.onWindow?.('close');
  await Promise.all(workers);
  await pool.close();
  return {
    ok,
    errors,
    warmupOk,
    warmupErrors,
    rps: (ok / windowMs) * 1000,
    latencies: Float64Array.from(latencies),
    errorSamples,
    windowMs,
  };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Nearest-rank percentile of an unsorted sample (q in 0..1). */
export function percentile(values: Float64Array, q: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export function concat(arrays: Float64Array[]): Float64Array {
  const out = new Float64Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}
