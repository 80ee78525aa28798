import type { Logger } from 'pino';
import { EngineUnavailableError } from '../engine.js';
import type { ImagePipelineRestClient } from './rest-client.js';

export interface UpstreamHealthOptions {
  /** How often /healthz is asked. */
  probeIntervalMs: number;
}

/**
 * The circuit breaker in front of the engine's one upstream. Health is learned passively from
 * every call (a network error, timeout or 5xx after the client's retries opens the circuit) and
 * actively by probing /healthz. An open circuit lets no call through; a probe that gets an
 * answer half-opens it, letting one trial call through, whose success closes it and whose
 * failure opens it again. So a dead or failing upstream sees about one call per probe
 * interval, not one per job per poll; the jobs meanwhile follow the runner's rules for an
 * unreachable engine (retried within POLL_FAILURE_BUDGET_MS, then ENGINE_UNREACHABLE).
 */
export class UpstreamHealth {
  /** Closed circuit: calls flow. */
  healthy = true;
  /** Half-open: the probe got an answer, so one trial call may go; its outcome decides. */
  halfOpen = false;
  /** When it last went unhealthy; null while healthy. */
  unhealthySince: number | null = null;
  /** Why it is unhealthy, for logs and job errors. */
  lastError: string | null = null;
  private trialInFlight = false;
  private timer: NodeJS.Timeout | null = null;
  /** The probe in progress, shared by everyone who wants one. */
  private probing: Promise<void> | null = null;
  private closed = false;

  constructor(
    readonly url: string,
    private readonly client: ImagePipelineRestClient,
    private readonly options: UpstreamHealthOptions,
    private readonly logger: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Starts the periodic health probes. */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.probe(), this.options.probeIntervalMs);
    this.timer.unref();
  }

  /** Whether a call may go to the upstream now (and if it is the half-open trial, claims it). */
  admit(): boolean {
    if (this.healthy) return true;
    if (!this.halfOpen || this.trialInFlight) return false;
    this.trialInFlight = true;
    return true;
  }

  /**
   * Like admit, but an open circuit is probed first (one shared probe): a submission to an
   * upstream that failed once is tried as soon as it answers again, rather than only after the
   * next scheduled probe.
   */
  async admitOrProbe(): Promise<boolean> {
    if (this.admit()) return true;
    if (this.halfOpen) return false; // its trial call is in flight
    await this.probe();
    return this.admit();
  }

  /** The error for a call the open circuit did not let through. */
  notAnswering(): EngineUnavailableError {
    return new EngineUnavailableError(`the upstream ${this.url} is not answering: ${this.lastError ?? 'unreachable'}`);
  }

  /** Records the outcome of a call: only "could not reach it" counts against the upstream. */
  observe(err: unknown): void {
    this.trialInFlight = false;
    if (err === undefined) return this.closeCircuit();
    if (err instanceof EngineUnavailableError) this.openCircuit(err.message);
    else if (this.halfOpen) this.closeCircuit(); // an answer, even a refusal, shows it is serving
  }

  /** Asks /healthz once; also the test hook for "probe now". */
  probe(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.probing ??= this.client.probe().then(
      () => {
        this.probing = null;
        this.halfOpenCircuit();
      },
      (err: unknown) => {
        this.probing = null;
        this.openCircuit(err instanceof Error ? err.message : String(err));
      },
    );
    return this.probing;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A probe got an answer: let one trial call decide. */
  private halfOpenCircuit(): void {
    if (this.healthy || this.halfOpen) return;
    this.halfOpen = true;
  }

  private closeCircuit(): void {
    this.halfOpen = false;
    if (this.healthy) return;
    const downForMs = this.clock() - (this.unhealthySince ?? this.clock());
    this.healthy = true;
    this.unhealthySince = null;
    this.lastError = null;
    this.logger.info({ upstream: this.url, downForMs }, 'the upstream answers again; sending it jobs');
  }

  /** Opens the circuit; the time it first went down is kept while trials keep failing. */
  private openCircuit(reason: string): void {
    this.lastError = reason;
    this.halfOpen = false;
    if (!this.healthy) return;
    this.healthy = false;
    this.unhealthySince = this.clock();
    this.logger.warn({ upstream: this.url, reason }, 'the upstream stopped answering; calls wait for it to answer a probe');
  }
}
