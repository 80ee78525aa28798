import type { JobEvents } from './job-events.js';
import type { JobRunner } from './job-runner.js';

interface Lease {
  release: () => void;
  unsubscribe: () => void;
  timer: NodeJS.Timeout;
  /** The newest preview published and not yet handed out. */
  unread: string | undefined;
}

/**
 * Previews for clients that poll instead of subscribing (a gateway polling this server's REST
 * status endpoint with preview=1): each poll that asks keeps the job watched for leaseMs, and
 * takes the newest preview published since its last poll. A client that stops asking stops the
 * previews once its lease runs out.
 */
export class PreviewLeases {
  private readonly leases = new Map<string, Lease>();

  constructor(
    private readonly runner: JobRunner,
    private readonly events: JobEvents,
    private readonly leaseMs: number,
  ) {}

  /** Renews the job's lease; returns the preview published since the last call, if any. */
  take(jobId: string): string | undefined {
    let lease = this.leases.get(jobId);
    if (lease) {
      lease.timer.refresh();
    } else {
      const timer = setTimeout(() => this.end(jobId), this.leaseMs);
      timer.unref();
      const created: Lease = {
        release: this.runner.watchPreview(jobId),
        unsubscribe: this.events.subscribe(jobId, (job) => {
          if (job.progress?.preview) created.unread = job.progress.preview;
        }),
        timer,
        unread: undefined,
      };
      lease = created;
      this.leases.set(jobId, lease);
    }
    const preview = lease.unread;
    lease.unread = undefined;
    return preview;
  }

  /** Ends every lease (at stop). */
  clear(): void {
    for (const jobId of [...this.leases.keys()]) this.end(jobId);
  }

  private end(jobId: string): void {
    const lease = this.leases.get(jobId);
    if (!lease) return;
    this.leases.delete(jobId);
    clearTimeout(lease.timer);
    lease.unsubscribe();
    lease.release();
  }
}
