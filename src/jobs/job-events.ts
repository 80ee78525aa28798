import type { Job } from './job.js';

export type JobListener = (job: Job) => void;

/**
 * Job change notifications, fanned out by job id: in this process (InProcessJobEvents, one
 * server process), or across processes on Redis pub/sub (queue/redis-job-events.ts, with
 * REDIS_URL) behind this same interface.
 */
export interface JobEvents {
  publish(job: Job): void;
  /** Returns the function that removes the listener. */
  subscribe(jobId: string, listener: JobListener): () => void;
  /** Open listeners, all jobs together: for leak checks and metrics. */
  listenerCount(): number;
}

export class InProcessJobEvents implements JobEvents {
  private readonly listeners = new Map<string, Set<JobListener>>();
  private count = 0;

  publish(job: Job): void {
    const set = this.listeners.get(job.id);
    if (!set) return;
    for (const listener of [...set]) listener(job);
  }

  subscribe(jobId: string, listener: JobListener): () => void {
    let set = this.listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.listeners.set(jobId, set);
    }
    set.add(listener);
    this.count++;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.count--;
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(jobId) === set) this.listeners.delete(jobId);
    };
  }

  listenerCount(): number {
    return this.count;
  }
}
