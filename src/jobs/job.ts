/** The job model: what a generation request becomes once accepted. Pure types and helpers. */

export const JOB_MODES = ['text2image', 'image2image', 'inpainting'] as const;
export type JobMode = (typeof JOB_MODES)[number];

export const JOB_STATUSES = ['PENDING', 'PROCESSING', 'SUCCESS', 'FAILURE', 'CANCELED'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['SUCCESS', 'FAILURE', 'CANCELED']);
export const isTerminal = (status: JobStatus): boolean => TERMINAL_STATUSES.has(status);

/** Denoising schedulers a request may choose. */
export const SCHEDULER_NAMES = ['EULER_A', 'EULER', 'DDIM', 'DPMPP_2M_KARRAS'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** Validated request parameters, in camelCase, with defaults filled in and the seed resolved. */
export interface GenerationParams {
  modelId: string;
  prompt: string;
  negativePrompt: string;
  numInferenceSteps: number;
  guidanceScale: number;
  samples: number;
  width: number;
  height: number;
  /** The seed the engine is asked to use: never -1 once a job exists. */
  seed: number;
  embeddings: string[];
  safetyChecker: boolean;
  /** Absent: the engine's default scheduler. */
  scheduler?: SchedulerName;
  /** Denoise strength; image2image and inpainting only. */
  strength?: number;
  initImage?: string;
  maskImage?: string;
}

export interface JobError {
  code: string;
  message: string;
}

export interface JobProgress {
  step: number;
  totalSteps: number;
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
  /** Times the job was taken back from a worker that stopped answering and queued again. */
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
  Pick<
    Job,
    | 'status'
    | 'engineHandle'
    | 'progress'
    | 'engineQueuePosition'
    | 'requeues'
    | 'images'
    | 'error'
    | 'startedAt'
    | 'finishedAt'
  >
>;

/**
 * Stable machine-readable codes for a job's error. INVALID_INPUT and IMAGE_UNAVAILABLE are the
 * request's fault (retrying it unchanged fails again); the others are the engine's or ours.
 */
export const JobErrorCode = {
  INVALID_INPUT: 'INVALID_INPUT',
  IMAGE_UNAVAILABLE: 'IMAGE_UNAVAILABLE',
  ENGINE_REJECTED: 'ENGINE_REJECTED',
  ENGINE_FAILED: 'ENGINE_FAILED',
  ENGINE_UNREACHABLE: 'ENGINE_UNREACHABLE',
  ENGINE_LOST_JOB: 'ENGINE_LOST_JOB',
  ENGINE_BAD_REPLY: 'ENGINE_BAD_REPLY',
  IMAGE_STORE_FAILED: 'IMAGE_STORE_FAILED',
  INTERNAL: 'INTERNAL',
} as const;
