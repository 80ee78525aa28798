import type { Job } from './job.js';

/**
 * Runs accepted jobs: hands them to an engine, follows them to the end (through the job
 * updater, which persists and publishes every change), resumes them after a restart, cancels
 * them. The job service and the API talk to this and nothing behind it.
 *
 * In one process, InProcessRunner submits and polls here. Beyond one machine, another
 * implementation puts jobs on a queue that separate worker processes take them from; API
 * processes then only create, read and follow jobs through the shared store and events.
 */
export interface JobRunner {
  /** Takes up the unfinished jobs a previous run left; returns them. Then runs what it is given. */
  start(): Promise<Job[]>;
  /** Stops taking work and waits (within the caller's grace) for engine calls in flight. */
  stop(): Promise<void>;
  /** A job just persisted as PENDING. Resolves once the runner has it (not when it has run). */
  enqueue(job: Job): Promise<void>;
  /**
   * Cancels an unfinished job: persisted as CANCELED first, then withdrawn from the queue and
   * the engine (best effort). Returns the job as it now stands: if it finished meanwhile, that.
   */
  cancel(job: Job): Promise<Job>;
  /** How many jobs start before this PENDING one on its engine; null once started, or unknown. */
  queuePosition(job: Job): Promise<number | null>;
  /**
   * Someone follows this job's live preview until they call the returned function: while anyone
   * does, the engine is asked for previews (which arrive as published progress events).
   */
  watchPreview(jobId: string): () => void;
  /** Jobs accepted and not started yet, as this runner knows them (the queue depth, for metrics). */
  queueDepth(): Promise<number>;
}
