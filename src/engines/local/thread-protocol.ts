import type { EmbeddingRows } from '../../diffusion/checkpoint.js';
import type { GenerateRequest } from '../../diffusion/pipeline.js';
import type { PreviewPixels } from '../../diffusion/preview.js';

/**
 * Messages between the local engine (main thread) and its generation thread. onnxruntime-node's
 * session.run is synchronous, so inference must not run on the thread that serves the API.
 */

/** A generation request as it crosses to the worker: images still encoded, the checkpoint by folder. */
export interface GenerateMessage extends Pick<
  GenerateRequest,
  | 'prompt'
  | 'negativePrompt'
  | 'steps'
  | 'guidanceScale'
  | 'samples'
  | 'width'
  | 'height'
  | 'seed'
  | 'noise'
  | 'scheduler'
  | 'strength'
  | 'keepUnmasked'
  | 'maskBlur'
> {
  type: 'generate';
  jobId: string;
  checkpointDir: string;
  embeddings: EmbeddingRows[];
  /** Encoded image files (PNG/JPEG/WebP), decoded and resized in the worker. */
  initImage?: Uint8Array;
  maskImage?: Uint8Array;
  safetyChecker: boolean;
}

export type ToWorker =
  | GenerateMessage
  | { type: 'cancel'; jobId: string }
  | { type: 'describe'; requestId: number; checkpointDir: string }
  /** Make previews of this job until this time (ms since the epoch), at most one per PREVIEW_INTERVAL_MS. */
  | { type: 'preview'; jobId: string; until: number };

/** The least time between two previews of one job. */
export const PREVIEW_INTERVAL_MS = 250;

export type FromWorker =
  /** preview: the first sample as it stands after this step, when previews were asked for and due. */
  | { type: 'progress'; jobId: string; step: number; total: number; preview?: PreviewPixels }
  | { type: 'done'; jobId: string; images: { data: Uint8Array; nsfw: boolean | null }[] }
  /** request: the job cannot run as asked (INVALID_INPUT); engine: something here went wrong. */
  | { type: 'failed'; jobId: string; message: string; fault: 'request' | 'engine' }
  | { type: 'canceled'; jobId: string }
  | { type: 'described'; requestId: number; hiddenSize?: number; inpainting?: boolean; error?: string };

export interface ThreadSettings {
  maxLoadedCheckpoints: number;
  executionProvider: 'auto' | 'cpu' | 'cuda';
  intraOpThreads: number;
}
