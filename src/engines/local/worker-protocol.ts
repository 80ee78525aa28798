import type { SchedulerName } from './schedulers/index.js';

/**
 * Messages between the local engine (main thread) and its generation worker. onnxruntime-node's
 * session.run is synchronous, so inference must not run on the thread that serves the API.
 */

export interface GenerateMessage {
  type: 'generate';
  jobId: string;
  checkpointDir: string;
  prompt: string;
  negativePrompt: string;
  steps: number;
  guidanceScale: number;
  samples: number;
  width: number;
  height: number;
  seed: number;
  scheduler: SchedulerName;
  embeddings: { trigger: string; vectors: Float32Array; count: number }[];
  /** Encoded image files (PNG/JPEG/WebP), decoded and resized in the worker. */
  initImage?: Uint8Array;
  maskImage?: Uint8Array;
  strength?: number;
  safetyChecker: boolean;
}

export type ToWorker =
  | GenerateMessage
  | { type: 'cancel'; jobId: string }
  | { type: 'describe'; requestId: number; checkpointDir: string };

export type FromWorker =
  | { type: 'progress'; jobId: string; step: number; total: number }
  | { type: 'done'; jobId: string; images: { data: Uint8Array; nsfw: boolean | null }[] }
  | { type: 'failed'; jobId: string; message: string; expected: boolean }
  | { type: 'canceled'; jobId: string }
  | { type: 'described'; requestId: number; hiddenSize?: number; inpainting?: boolean; error?: string };

export interface WorkerSettings {
  maxLoadedCheckpoints: number;
  executionProvider: 'auto' | 'cpu' | 'cuda';
  intraOpThreads: number;
}
