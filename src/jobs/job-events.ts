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

/** Called when a job gets its first listener here, and when its last one goes. */
export interface FanOutHooks {
  first(jobId: string): void;
  last(jobId: string): void;
}

/**
 * Fans events out to the listeners of each job in this process. RedisJobEvents builds on it,
 * subscribing to a job's channel while the job has listeners here (the hooks).
 */
export class InProcessJobEvents implements JobEvents {
  private readonly listeners = new Map<string, Set<JobListener>>();
  private count = 0;

  constructor(private readonly hooks?: FanOutHooks) {}

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
      this.hooks?.first(jobId);
    }
    set.add(listener);
    this.count++;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.count--;
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(jobId) === set) {
        this.listeners.delete(jobId);
        this.hooks?.last(jobId);
      }
    };
  }

  listenerCount(): number {
    return this.count;
  }

  /** Whether anyone here listens to the job. */
  has(jobId: string): boolean {
    return this.listeners.has(jobId);
  }

  /** The jobs someone here listens to. */
  jobIds(): IterableIterator<string> {
    return this.listeners.keys();
  }
}
