/** The job model: what a generation request becomes once accepted. Pure types and helpers. */
import type { GenerationParams, JobMode } from '../generation/request.js';

export const JOB_STATUSES = ['PENDING', 'PROCESSING', 'SUCCESS', 'FAILURE', 'CANCELED'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['SUCCESS', 'FAILURE', 'CANCELED']);
export const isTerminal = (status: JobStatus): boolean => TERMINAL_STATUSES.has(status);

export interface JobError {
  code: string;
  message: string;
}

export interface JobProgress {
  step: number;
  totalSteps: number;
  /** A data: URL of the job as it forms: only on published events of watched jobs, never stored. */
  preview?: string;
}

export interface JobImage {
  /** Unguessable file name in the image store. */
  name: string;
  contentType: string;
  /** Set when the engine ran a safety check on this sample. */
  nsfw: boolean | null;
}

export interface Job {
  id: string;
  /** The API key that created it; the only one that may see it. */
  ownerId: string;
  mode: JobMode;
  status: JobStatus;
  params: GenerationParams;
  /** Which engine runs it, and that engine's handle once submitted (opaque to everything else). */
  engine: string;
  engineHandle: string | null;
  progress: JobProgress | null;
  /** Position reported by the engine's own queue, if it has one. */
  engineQueuePosition: number | null;
  /**
   * Times the job was taken back from an upstream that stopped answering and queued again, by
   * the multi-upstream gateway this server no longer has: nothing increments it now; kept
   * (column and field) for the jobs stored then, migrations being append-only.
   */
  requeues: number;
  /** Where the job's end is POSTed (signed), if the client asked. */
  webhookUrl: string | null;
  images: JobImage[];
  error: JobError | null;
  /** Incremented on every change; subscribers use it to drop stale events. */
  version: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

/** A change to a job, as persisted. */
export type JobPatch = Partial<
  Pick<Job, 'status' | 'engineHandle' | 'progress' | 'engineQueuePosition' | 'requeues' | 'images' | 'error' | 'startedAt' | 'finishedAt'>
>;
