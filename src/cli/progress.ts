import cliProgress from 'cli-progress';
import type { JobStateFragment } from '../client/generated/graphql.js';
import type { Output } from './context.js';

/** What the progress display reads of a job. */
export type JobProgressView = Pick<JobStateFragment, 'status' | 'queuePosition' | 'progress'>;

export interface ProgressReporter {
  /** Each state of the job as it arrives, the current one first. */
  update(job: JobProgressView): void;
  /** Ends the display (bar, hidden cursor) so other output can follow, e.g. on Ctrl-C. Idempotent. */
  stop(): void;
}

/** A live bar for people at a terminal; plain lines, one per change, for logs and pipes. */
export function createProgressReporter(out: Output): ProgressReporter {
  return out.isTTY ? new TerminalProgress(out as NodeJS.WriteStream) : new PlainProgress(out);
}

/** No display at all (--json). */
export const silentProgress: ProgressReporter = { update: () => undefined, stop: () => undefined };

const FINAL = new Set(['SUCCESS', 'FAILURE', 'CANCELED']);

/** "queued 2" (jobs ahead), "pending" (the engine does not say), "processing 3/20", then the final status. */
export function plainLine(job: JobProgressView): string {
  switch (job.status) {
    case 'PENDING':
      return job.queuePosition === null ? 'pending' : `queued ${job.queuePosition}`;
    case 'PROCESSING':
      return `processing ${job.progress.step}/${job.progress.totalSteps}`;
    default:
      return job.status;
  }
}

class PlainProgress implements ProgressReporter {
  private last = '';

  constructor(private readonly out: Output) {}

  update(job: JobProgressView): void {
    const line = plainLine(job);
    if (line === this.last) return;
    this.last = line;
    this.out.write(`${line}\n`);
  }

  stop(): void {}
}

/**
 * One line rewritten in place while the job waits ("queued: 2 jobs ahead"), then a cli-progress
 * bar with steps and an ETA while it runs, then the final status with the time it took.
 */
class TerminalProgress implements ProgressReporter {
  private bar: cliProgress.SingleBar | null = null;
  private waitingLine = false;
  private done = false;
  private readonly startedAt = Date.now();
  private readonly eta = new StepRate();

  constructor(private readonly out: NodeJS.WriteStream) {}

  update(job: JobProgressView): void {
    if (this.done) return;
    const { step, totalSteps } = job.progress;
    if (job.status === 'PENDING') {
      this.rewrite(job.queuePosition === null ? 'waiting for the engine…' : `queued: ${ahead(job.queuePosition)}`);
      return;
    }
    // A job that finished between two updates still shows its full bar.
    if (job.status === 'PROCESSING' || job.status === 'SUCCESS') {
      const value = job.status === 'SUCCESS' ? totalSteps : step;
      const etaText = job.status === 'SUCCESS' ? '0s' : this.eta.estimate(step, totalSteps);
      if (!this.bar) this.startBar(totalSteps, value, etaText);
      else {
        this.bar.setTotal(totalSteps);
        this.bar.update(value, { etaText });
      }
    }
    if (FINAL.has(job.status)) {
      this.stop();
      this.out.write(`${job.status} after ${formatSeconds((Date.now() - this.startedAt) / 1000)}\n`);
    }
  }

  stop(): void {
    if (this.done) return;
    this.done = true;
    if (this.bar) this.bar.stop();
    else if (this.waitingLine) this.out.write('\n');
  }

  private startBar(total: number, value: number, etaText: string): void {
    if (this.waitingLine) this.rewrite('');
    this.waitingLine = false;
    this.bar = new cliProgress.SingleBar({
      stream: this.out,
      format: 'generating {bar} {value}/{total} steps | {percentage}% | ETA {etaText}',
      barCompleteChar: '█',
      barIncompleteChar: '░',
      hideCursor: true,
      clearOnComplete: false,
    });
    this.bar.start(total, value, { etaText });
  }

  private rewrite(text: string): void {
    this.out.write(`\r\x1b[2K${text}`);
    this.waitingLine = text !== '';
  }
}

function ahead(position: number): string {
  return position === 0 ? 'next in line' : `${position} job${position === 1 ? '' : 's'} ahead`;
}

/** ETA from the pace since the first step seen (server updates come in bursts, so a short window jitters). */
export class StepRate {
  private first: { step: number; at: number } | null = null;

  constructor(private readonly now: () => number = Date.now) {}

  estimate(step: number, total: number): string {
    const at = this.now();
    if (!this.first) {
      this.first = { step, at };
      return '--';
    }
    if (step <= this.first.step) return '--';
    const perStep = (at - this.first.at) / 1000 / (step - this.first.step);
    return formatSeconds(perStep * Math.max(0, total - step));
  }
}

export function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)}s`;
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole}s`;
  return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
}
