import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger.js';

export const HEALTH_PATH = '/healthz';
export const READY_PATH = '/readyz';

/** One dependency's check: resolves while it answers; rejects (or takes too long) otherwise. */
export type ReadinessCheck = () => Promise<void>;

export type CheckResult = { status: 'ok' } | { status: 'failed'; error: string };

export interface Readiness {
  /** Runs every check at once (concurrent callers share one run). */
  check(): Promise<{ ready: boolean; checks: Record<string, CheckResult> }>;
  /** From now on, not ready: the process is shutting down. */
  stopping(): void;
}

/**
 * Readiness: whether this process can do its work now, i.e. whether its dependencies answer
 * (the database, the image store, and Redis once there is one). Liveness (/healthz) is simpler:
 * the process serves requests. A failed check names the failure by its code only (EACCES,
 * ENOTDIR, "timed out"): /readyz needs no key, so paths and messages go to the log instead.
 */
export function createReadiness(checks: Record<string, ReadinessCheck>, logger: Logger, timeoutMs = 2_000): Readiness {
  let running: Promise<{ ready: boolean; checks: Record<string, CheckResult> }> | null = null;
  let stopping = false;
  const failing = new Set<string>();

  const runOne = async (name: string, check: ReadinessCheck): Promise<CheckResult> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        check(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(Object.assign(new Error(`${name} did not answer in ${timeoutMs} ms`), { code: 'timed out' })),
            timeoutMs,
          );
        }),
      ]);
      if (failing.delete(name)) logger.info({ check: name }, 'readiness check passes again');
      return { status: 'ok' };
    } catch (err) {
      // Logged when it starts failing, not on every probe of a load balancer.
      if (!failing.has(name)) logger.warn({ err, check: name }, 'readiness check failed');
      failing.add(name);
      return { status: 'failed', error: reasonOf(err) };
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    check() {
      running ??= (async () => {
        const entries = await Promise.all(Object.entries(checks).map(async ([name, check]) => [name, await runOne(name, check)] as const));
        const results: Record<string, CheckResult> = Object.fromEntries(entries);
        if (stopping) results.server = { status: 'failed', error: 'shutting down' };
        return { ready: Object.values(results).every((r) => r.status === 'ok'), checks: results };
      })().finally(() => (running = null));
      return running;
    },
    stopping() {
      stopping = true;
    },
  };
}

function reasonOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.length > 0 && code.length <= 40) return code;
  return err instanceof Error && err.name !== 'Error' ? err.name : 'error';
}

/** GET /healthz: 200 while the process serves (gateways probe it). */
export function serveHealth(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end('{"status":"ok"}');
}

/** GET /readyz: 200 with every check, or 503 naming the failing ones. */
export async function serveReady(readiness: Readiness, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { ready, checks } = await readiness.check();
  const failing = Object.entries(checks)
    .filter(([, r]) => r.status !== 'ok')
    .map(([name]) => name);
  const body = ready ? { status: 'ready', checks } : { status: 'unavailable', failing, checks };
  res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}
