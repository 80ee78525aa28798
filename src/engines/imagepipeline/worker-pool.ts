import type { Logger } from 'pino';
import { EngineUnavailableError } from '../engine.js';
import type { ImagePipelineRestClient } from './rest-client.js';

/** One upstream this server sends jobs to, and what the pool knows of it. */
export interface PoolWorker {
  readonly url: string;
  readonly client: ImagePipelineRestClient;
  healthy: boolean;
  /** When it last went unhealthy; null while healthy. */
  unhealthySince: number | null;
  /** Why it is unhealthy, for logs and job errors. */
  lastError: string | null;
  /** Our jobs it holds that have not ended: the load used to choose a worker. */
  readonly jobs: Set<string>;
}

export interface WorkerPoolOptions {
  probeIntervalMs: number;
  /** How long a worker may stay unhealthy before its jobs are given up on. */
  graceMs: number;
}

/**
 * The workers behind a gateway (or the single upstream of a plain remote engine). Health is
 * learned passively from every call (a network error, timeout or 5xx marks a worker unhealthy)
 * and actively by probing /healthz, which is also the only way an unhealthy worker comes back:
 * no job is sent to it meanwhile, so a dead upstream is not hammered.
 */
export class WorkerPool {
  readonly workers: readonly PoolWorker[];
  private readonly byUrl: Map<string, PoolWorker>;
  private timer: NodeJS.Timeout | null = null;
  /** The probe round in progress, shared by everyone who wants one. */
  private probing: Promise<void> | null = null;
  private closed = false;
  /** Rotates the starting point among equally loaded workers, so ties spread out. */
  private turn = 0;

  constructor(
    clients: { url: string; client: ImagePipelineRestClient }[],
    private readonly options: WorkerPoolOptions,
    private readonly logger: Logger,
    private readonly clock: () => number = Date.now,
  ) {
    if (clients.length === 0) throw new Error('a worker pool needs at least one worker');
    this.workers = clients.map(({ url, client }) => ({
      url,
      client,
      healthy: true,
      unhealthySince: null,
      lastError: null,
      jobs: new Set<string>(),
    }));
    this.byUrl = new Map(this.workers.map((w) => [w.url, w]));
  }

  /** Starts the periodic health probes. */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.probeAll(), this.options.probeIntervalMs);
    this.timer.unref();
  }

  get(url: string): PoolWorker | undefined {
    return this.byUrl.get(url);
  }

  get first(): PoolWorker {
    return this.workers[0]!;
  }

  /** The healthy worker with the fewest jobs in flight, skipping those already tried. */
  pick(exclude: ReadonlySet<string> = new Set()): PoolWorker | undefined {
    const n = this.workers.length;
    let best: PoolWorker | undefined;
    for (let i = 0; i < n; i++) {
      const w = this.workers[(this.turn + i) % n]!;
      if (!w.healthy || exclude.has(w.url)) continue;
      if (!best || w.jobs.size < best.jobs.size) best = w;
    }
    this.turn = (this.turn + 1) % n;
    return best;
  }

  /**
   * Like pick, but when no worker is healthy, asks them all first (one shared probe round): a
   * half-open circuit, so that a lone upstream that failed once is tried again as soon as it
   * answers rather than only at the next scheduled probe.
   */
  async pickOrProbe(exclude: ReadonlySet<string> = new Set()): Promise<PoolWorker | undefined> {
    const worker = this.pick(exclude);
    if (worker || this.workers.some((w) => w.healthy)) return worker;
    await this.probeAll();
    return this.pick(exclude);
  }

  /** Why no worker can take a job: each one's last error. */
  describeUnhealthy(): string {
    return this.workers.map((w) => `${w.url}: ${w.lastError ?? 'healthy'}`).join('; ');
  }

  /** Whether the worker has been unhealthy for longer than the grace period. */
  givenUp(w: PoolWorker): boolean {
    return !w.healthy && w.unhealthySince !== null && this.clock() - w.unhealthySince >= this.options.graceMs;
  }

  /** Records the outcome of a call: only "could not reach it" counts against a worker. */
  observe(w: PoolWorker, err: unknown): void {
    if (err === undefined) return this.markHealthy(w);
    if (err instanceof EngineUnavailableError) this.markUnhealthy(w, err.message);
  }

  /** Asks every worker once; also the test hook for "probe now". */
  probeAll(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.probing ??= Promise.all(
      this.workers.map(async (w) => {
        try {
          await w.client.probe();
          this.markHealthy(w);
        } catch (err) {
          this.markUnhealthy(w, err instanceof Error ? err.message : String(err));
        }
      }),
    ).then(
      () => void (this.probing = null),
      () => void (this.probing = null),
    );
    return this.probing;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private markHealthy(w: PoolWorker): void {
    if (w.healthy) return;
    const downForMs = this.clock() - (w.unhealthySince ?? this.clock());
    w.healthy = true;
    w.unhealthySince = null;
    w.lastError = null;
    this.logger.info({ worker: w.url, downForMs }, 'worker answers again; sending it jobs');
  }

  private markUnhealthy(w: PoolWorker, reason: string): void {
    w.lastError = reason;
    if (!w.healthy) return;
    w.healthy = false;
    w.unhealthySince = this.clock();
    this.logger.warn({ worker: w.url, reason, jobsHeld: w.jobs.size }, 'worker stopped answering; skipping it');
  }
}
