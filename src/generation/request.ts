/**
 * What a generation request is, whatever carries it (GraphQL, REST, a queue) and whichever
 * engine runs it: its modes, its validated parameters, and the codes a failed one ends with.
 */

export const JOB_MODES = ['text2image', 'image2image', 'inpainting'] as const;
export type JobMode = (typeof JOB_MODES)[number];

/** Denoising schedulers a request may choose. */
export const SCHEDULER_NAMES = ['DPMPP_2M_KARRAS', 'EULER_A', 'EULER', 'DDIM', 'PNDM', 'LMS', 'HEUN', 'DPMPP_2M', 'UNIPC'] as const;
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
