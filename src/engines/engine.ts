import type { FieldIssue } from '../generation/input.js';
import type { GenerationParams, JobMode, NoiseSourceName } from '../generation/request.js';
import type { Catalogue, CatalogueEntry } from '../catalogue/catalogue.js';

/**
 * Where diffusion happens, behind one interface. The job layer never knows whether an engine
 * runs in this process or across the network; it only submits, polls, cancels and lists models.
 */

export interface EngineJob {
  id: string;
  /** Whose job it is (the API key's id): an engine with a queue of its own takes owners in turn. */
  ownerId?: string;
  mode: JobMode;
  params: GenerationParams;
}

export interface EmbeddingUpload {
  fileName: string;
  data: Buffer;
  name: string;
  triggerWord: string;
}

/** An image an engine produced, already in memory, ready for the image store. */
export interface GeneratedImage {
  data: Buffer;
  contentType: string;
  nsfw: boolean | null;
}

export type EngineStatus =
  | { state: 'QUEUED'; queuePosition: number | null }
  /**
   * preview: a data: URL of the job as it forms, when one was asked for (see StatusOptions); each is reported once.
   * startedAt: when the engine began generating, where it knows; else the job's start is when a
   * poll first saw it running, which lags by up to a poll interval.
   */
  | { state: 'PROCESSING'; step: number; totalSteps: number; preview?: string; startedAt?: Date }
  | { state: 'SUCCESS'; images: GeneratedImage[]; startedAt?: Date }
  | { state: 'FAILURE'; code: string; message: string }
  /**
   * The engine has no record of the handle (it restarted, or expired the job), or the handle
   * names an upstream the engine no longer sends to. The job ends FAILURE (ENGINE_LOST_JOB).
   */
  | { state: 'LOST'; message: string };

/**
 * preview: someone is watching the job's preview. Asking is a lease: the engine makes previews
 * (at a bounded rate) for PREVIEW_LEASE_MS after the last status call that asked, then stops, so
 * a job nobody watches costs nothing.
 */
export interface StatusOptions {
  preview?: boolean;
}

export const PREVIEW_LEASE_MS = 10_000;

/** What submit returns: a handle to poll, unless the engine answered with a final state at once. */
export interface EngineSubmission {
  handle: string;
  status: EngineStatus;
}

export interface Engine {
  readonly name: string;
  /**
   * The noise source this engine's seeds drive, recorded in each new job's parameters (so a job
   * resumed after a change of configuration still draws the same noise); absent where this server
   * cannot know it (a remote engine: its upstream draws its own).
   */
  readonly noise?: NoiseSourceName;
  /**
   * fresh: look again first for models other processes added (an embedding uploaded on another
   * replica); asked when a request names one this process does not know yet.
   */
  catalogue(options?: { fresh?: boolean }): Promise<Catalogue>;
  /** Checks that need the engine's own models (exact CLIP token counts, say); run before a job exists. */
  validate?(params: GenerationParams, mode: JobMode): Promise<FieldIssue[]>;
  /** Adds a textual-inversion embedding at run time; engines that cannot, lack this method. */
  addEmbedding?(upload: EmbeddingUpload): Promise<CatalogueEntry>;
  /**
   * Tells when a job starts or ends on the engine (by its handle), so that it is polled at once
   * rather than at its next turn, which may be seconds away after a long wait in the queue.
   * Progress is still polled. Engines that cannot know (a remote one) lack this method.
   */
  onChange?(listener: (handle: string) => void): () => void;
  /** Starts the work; must not wait for generation to finish. */
  submit(job: EngineJob): Promise<EngineSubmission>;
  status(handle: string, job: EngineJob, options?: StatusOptions): Promise<EngineStatus>;
  /** Best effort: the job is already CANCELED in the store whatever this does. */
  cancel(handle: string, job: EngineJob): Promise<void>;
  /**
   * Engines whose queue is in this process: its live figures, so positions are exact rather
   * than as of the last poll. waiting: jobs submitted and not started. ahead: jobs that start
   * before this one, null when it is not waiting there.
   */
  readonly queue?: { waiting(): number; ahead(jobId: string): number | null };
  /** Previews this engine has made so far (engines that make them): what watching costs, for operators. */
  previewsMade?(): number;
  close(): Promise<void>;
}

/**
 * An engine error the caller may retry later (network failure, 5xx, timeout), as opposed to an
 * answer. Everything else thrown by an engine is treated as a definite failure of that job.
 */
export class EngineUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EngineUnavailableError';
  }
}

/** The engine sent something that does not follow its protocol. */
export class EngineProtocolError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EngineProtocolError';
  }
}
