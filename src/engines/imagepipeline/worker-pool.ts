import type { Logger } from 'pino';
import { EngineUnavailableError } from '../engine.js';
import type { ImagePipelineRestClient } from './rest-client.js';

/** One upstream this server sends jobs to, and what the pool knows of it. */
export interface PoolWorker {
  readonly url: string;
  readonly client: ImagePipelineRestClient;
  /** Closed circuit: calls flow. */
  healthy: boolean;
  /** Half-open: the probe got an answer, so one trial call may go; its outcome decides. */
  halfOpen: boolean;
  trialInFlight: boolean;
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
 * The workers behind a gateway (or the single upstream of a plain remote engine), each behind a
 * circuit breaker. Health is learned passively from every call (a network error, timeout or 5xx
 * opens the circuit) and actively by probing /healthz. An open circuit lets no call through; a
 * probe that gets an answer half-opens it, letting one trial call through, whose success closes
 * it and whose failure opens it again. So a dead or failing upstream sees about one call per
 * probe interval, not one per job per poll.
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
      halfOpen: false,
      trialInFlight: false,
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

  /**
   * A half-open worker first, for its trial call: a submission is safe to try there, since one
   * that cannot get through moves on to the next worker (the caller reports the outcome to
   * observe). Otherwise the healthy worker with the fewest jobs in flight, skipping those tried.
   */
  pick(exclude: ReadonlySet<string> = new Set()): PoolWorker | undefined {
    const trial = this.workers.find((w) => !w.healthy && !exclude.has(w.url) && this.admit(w));
    if (trial) return trial;
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

  /** Whether a call may go to this worker now (and if it is the half-open trial, claims it). */
  admit(w: PoolWorker): boolean {
    if (w.healthy) return true;
    if (!w.halfOpen || w.trialInFlight) return false;
    w.trialInFlight = true;
    return true;
  }

  /**
   * Like pick, but when no worker is healthy, asks them all first (one shared probe round): a
   * half-open circuit, so that a lone upstream that failed once is tried again as soon as it
   * answers rather than only at the next scheduled probe.
   */
  async pickOrProbe(exclude: ReadonlySet<string> = new Set()): Promise<PoolWorker | undefined> {
    const worker = this.pick(exclude);
    if (worker || this.workers.some((w) => w.healthy || w.halfOpen)) return worker;
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
    w.trialInFlight = false;
    if (err === undefined) return this.closeCircuit(w);
    if (err instanceof EngineUnavailableError) this.openCircuit(w, err.message);
    else if (w.halfOpen) this.closeCircuit(w); // an answer, even a refusal, shows it is serving
  }

  /** Asks every worker once; also the test hook for "probe now". */
  probeAll(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.probing ??= Promise.all(
      this.workers.map(async (w) => {
        try {
          await w.client.probe();
          this.halfOpenCircuit(w);
        } catch (err) {
          this.openCircuit(w, err instanceof Error ? err.message : String(err));
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

  /** A probe got an answer: let one trial call decide. */
  private halfOpenCircuit(w: PoolWorker): void {
    if (w.healthy || w.halfOpen) return;
    w.halfOpen = true;
  }

  private closeCircuit(w: PoolWorker): void {
    w.halfOpen = false;
    if (w.healthy) return;
    const downForMs = this.clock() - (w.unhealthySince ?? this.clock());
    w.healthy = true;
    w.unhealthySince = null;
    w.lastError = null;
    this.logger.info({ worker: w.url, downForMs }, 'worker answers again; sending it jobs');
  }

  /** Opens the circuit; the time it first went down is kept while trials keep failing. */
  private openCircuit(w: PoolWorker, reason: string): void {
    w.lastError = reason;
    w.halfOpen = false;
    if (!w.healthy) return;
    w.healthy = false;
    w.unhealthySince = this.clock();
    this.logger.warn({ worker: w.url, reason, jobsHeld: w.jobs.size }, 'worker stopped answering; skipping it');
  }
}
