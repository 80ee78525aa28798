import { JobErrorCode } from '../generation/request.js';
import type { Metrics } from '../metrics/metrics.js';
import { isTerminal, type Job } from './job.js';

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(JobErrorCode));
/** Jobs whose step pace is being measured at once; past this the oldest is dropped (a job lost elsewhere). */
const MAX_PACED = 10_000;

/**
 * Turns job changes into metrics: what JobService accepts (created) and every change JobUpdater
 * persists (changed). Knows the job model, not where jobs run: a worker process records the
 * same from its own updater.
 */
export class JobMetrics {
  /** The last progress seen of each running job, for the time per step. */
  private readonly pace = new Map<string, { step: number; at: number }>();

  constructor(
    private readonly metrics: Metrics,
    private readonly clock: () => number = Date.now,
  ) {}

  created(job: Job): void {
    this.metrics.jobsCreated.inc({ mode: job.mode });
  }

  changed(before: Job, after: Job): void {
    const mode = after.mode;
    if (before.startedAt === null && after.startedAt !== null && (after.status === 'PROCESSING' || after.status === 'SUCCESS')) {
      this.metrics.queueWait.observe({ mode }, seconds(after.startedAt.getTime() - after.createdAt.getTime()));
    }
    if (after.status === 'PROCESSING' && after.progress) this.stepsMade(after);
    if (!isTerminal(after.status)) return;
    this.pace.delete(after.id);
    this.metrics.jobsFinished.inc({ mode, status: after.status });
    if (after.status === 'FAILURE') {
      const code = after.error?.code ?? JobErrorCode.INTERNAL;
      this.metrics.engineErrors.inc({ code: KNOWN_CODES.has(code) ? code : 'OTHER' });
    }
    // A job that failed before it started (startedAt is set at its end) did no generating.
    const started = after.status === 'SUCCESS' || before.startedAt !== null;
    if (started && after.startedAt && after.finishedAt) {
      this.metrics.generationTime.observe({ mode, status: after.status }, seconds(after.finishedAt.getTime() - after.startedAt.getTime()));
    }
  }

  /** Steps between two progress reports share the time between them (the poller sees several at once). */
  private stepsMade(job: Job): void {
    const now = this.clock();
    const step = job.progress!.step;
    const last = this.pace.get(job.id);
    if (last && step > last.step) {
      const perStep = seconds((now - last.at) / (step - last.step));
      for (let i = last.step; i < step; i++) this.metrics.stepTime.observe({ mode: job.mode }, perStep);
    }
    if (!last || step > last.step) {
      this.pace.delete(job.id);
      this.pace.set(job.id, { step, at: now });
      if (this.pace.size > MAX_PACED) this.pace.delete(this.pace.keys().next().value!);
    }
  }
}

const seconds = (ms: number) => Math.max(0, ms) / 1000;
