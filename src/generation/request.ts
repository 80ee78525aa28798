/**
 * What a generation request is, whatever carries it (GraphQL, REST, a queue) and whichever
 * engine runs it: its modes, its validated parameters, and the codes a failed one ends with.
 */

export const JOB_MODES = ['text2image', 'image2image', 'inpainting'] as const;
export type JobMode = (typeof JOB_MODES)[number];

/** Denoising schedulers a request may choose. */
export const SCHEDULER_NAMES = ['DPMPP_2M_KARRAS', 'EULER_A', 'EULER', 'DDIM', 'PNDM', 'LMS', 'HEUN', 'DPMPP_2M', 'UNIPC'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/**
 * Whose generator a seed drives: 'torch' is torch.randn with a CPU torch.Generator seeded with
 * manual_seed(seed) (ComfyUI, diffusers with a CPU generator); 'numpy' is numpy's legacy
 * RandomState(seed).randn (diffusers' ONNX pipelines). The local engine's is LOCAL_NOISE.
 */
export const NOISE_SOURCES = ['torch', 'numpy'] as const;
export type NoiseSourceName = (typeof NOISE_SOURCES)[number];

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
  /** Inpainting only: the Gaussian sigma in pixels of the edge where the result meets the kept init image (0 = hard edge). */
  maskBlur?: number;
  /** Inpainting only: paste the init image's unmasked pixels back over the result; false = the pipeline's output unchanged. */
  keepUnmasked?: boolean;
  /**
   * The noise source the engine seeds with, recorded when the job is created by an engine that
   * knows it (the local engine: LOCAL_NOISE); absent for a remote engine, whose upstream draws
   * its own noise, and for jobs recorded before this field existed.
   */
  noise?: NoiseSourceName;
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
