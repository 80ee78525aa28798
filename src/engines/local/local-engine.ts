import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InputValidationError, type FieldIssue } from '../../generation/input.js';
import { JobErrorCode, NOISE_SOURCES, SCHEDULER_NAMES, type GenerationParams, type NoiseSourceName } from '../../generation/request.js';
import { Catalogue, catalogueEntrySchema, type CatalogueEntry } from '../../catalogue/catalogue.js';
import { ImageFetchError, type ImageFetcher } from '../../images/fetch-image.js';
import {
  PREVIEW_LEASE_MS,
  type EmbeddingUpload,
  type Engine,
  type EngineJob,
  type EngineStatus,
  type EngineSubmission,
  type GeneratedImage,
  type StatusOptions,
} from '../engine.js';
import { previewDataUrl } from '../../diffusion/image-codec.js';
import { EMBEDDING_EXTENSIONS, EmbeddingFileError, parseEmbedding, widthHint } from '../../diffusion/embeddings/index.js';
import type { EmbeddingRows } from '../../diffusion/checkpoint.js';
import { GenerationFailed, GenerationThread } from './generation-thread.js';
import { uploadSidecarSchema, type ModelDirectory, type UploadSidecar } from './model-directory.js';
import { GenerationCanceled } from '../../diffusion/pipeline.js';
import { SCHEDULER_NAMES as IMPLEMENTED, strengthStartIndex, type SchedulerName } from '../../diffusion/schedulers/index.js';
import { NOISE_SOURCES as IMPLEMENTED_NOISE } from '../../diffusion/noise/index.js';
import { ClipTokenizer } from '../../diffusion/tokenizer/clip-tokenizer.js';
import { FairQueue } from '../../concurrency/fair-queue.js';
import type { ThreadSettings } from './thread-protocol.js';

export interface LocalEngineOptions {
  /** Fetches init and mask images under the SSRF and size rules (owned, and closed, by the engine). */
  imageFetcher: ImageFetcher;
  /** Generations run at once, each on its own worker thread (the rest wait, API keys taken in turn). */
  concurrency: number;
  /** Checkpoints kept loaded (least recently used beyond that are released). */
  maxLoadedCheckpoints: number;
  defaultScheduler: SchedulerName;
  /** The noise source of new jobs (LOCAL_NOISE); a job keeps the one recorded in its parameters. */
  noise: NoiseSourceName;
  /** ONNX Runtime settings for the generation thread. */
  worker: Omit<ThreadSettings, 'maxLoadedCheckpoints'>;
  readEmbedding: (file: string) => Promise<{ vectors: Float32Array; count: number; width: number }>;
  /** Where uploaded embeddings are stored (with a JSON sidecar each). */
  uploadsDir: string;
  logger: Logger;
}

// Every scheduler a request may name is one the diffusion core implements (a compile-time check).
SCHEDULER_NAMES satisfies readonly (typeof IMPLEMENTED)[number][];
// Likewise every noise source a job may record.
NOISE_SOURCES satisfies readonly (typeof IMPLEMENTED_NOISE)[number][];

/** A trigger word: one "word" a user can type, as the tokenizer matches whole words. */
const TRIGGER_WORD = /^[\p{L}\p{N}_<>.-]{1,64}$/u;

type State =
  | { state: 'QUEUED'; job: EngineJob }
  /** preview: made since the last status call, reported by the next one. */
  | { state: 'PROCESSING'; job: EngineJob; step: number; totalSteps: number; startedAt: Date; preview?: string }
  | { state: 'SUCCESS'; images: GeneratedImage[]; startedAt: Date }
  | { state: 'FAILURE'; code: string; message: string }
  | { state: 'CANCELED' };

/**
 * What a failed job reports: whose fault it was, as its code, and the reason (the job updater
 * cleans paths, stack frames and secrets out of it before anyone sees it).
 */
function failureOf(err: unknown): { code: string; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ImageFetchError) return { code: JobErrorCode.IMAGE_UNAVAILABLE, message };
  if (err instanceof GenerationFailed && err.fault === 'request') return { code: JobErrorCode.INVALID_INPUT, message };
  return { code: JobErrorCode.ENGINE_FAILED, message: `the local engine failed: ${message}` };
}

/**
 * How long a finished job's result (its PNG bytes, for a success) is kept: until the poller has
 * read it, at most 10 minutes; once read, only a short while, in case a read raced a cancel.
 */
const UNREAD_RESULT_TTL_MS = 10 * 60_000;
const READ_RESULT_TTL_MS = 30_000;
/** How long close() waits for canceled generations to reach the end of their step. */
const CLOSE_CANCEL_WAIT_MS = 10_000;
/** How often the catalogue looks for embeddings other processes uploaded to the shared uploadsDir. */
const UPLOADS_LOOK_MS = 1_000;

/**
 * Runs SD 1.5 in this process on ONNX Runtime, in a worker thread (session.run is synchronous
 * and would otherwise stall the API): a bounded number at once, the waiting ones taken owner by
 * owner in turn (FairQueue: one key's backlog does not hold back another key's first job),
 * progress per step, cancel between steps. The handle is the job id. A handle it does not know (after a restart)
 * is simply queued again: generation is deterministic for the job's seed, so nothing is lost.
 */
export class LocalEngine implements Engine {
  readonly name = 'local';
  readonly noise: NoiseSourceName;
  private readonly states = new Map<string, State>();
  /** Handles (job ids) waiting for a worker, by owner, taken in turn. */
  private readonly waiting = new FairQueue<string>();
  private running = 0;
  private closed = false;
  private readonly tokenizers = new Map<string, Promise<ClipTokenizer>>();
  private readonly vectors = new Map<string, Promise<EmbeddingRows>>();
  /** When each finished job's entry is dropped; at most one timer per job. */
  private readonly expiry = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  /** Uploads (and looks for other processes' uploads) run one at a time, so two cannot claim the same trigger word. */
  private uploads: Promise<unknown> = Promise.resolve();
  /** The last look at uploadsDir for other processes' uploads: when, and its outcome. */
  private uploadsLook: { at: number; done: Promise<void> } | null = null;
  /** Sidecars in uploadsDir that could not be adopted (reported once, not read again). */
  private readonly unadoptable = new Set<string>();

  /** One generation thread per concurrent job (each holds its own sessions). */
  private readonly workers: GenerationThread[];
  private readonly busy = new Map<string, GenerationThread>();
  /** Generations running now (close() waits for them to stop). */
  private readonly runs = new Set<Promise<void>>();
  /** Jobs someone watches: make previews until this time (see StatusOptions). */
  private readonly previewLeases = new Map<string, number>();
  private previews = 0;
  private readonly changeListeners = new Set<(handle: string) => void>();

  constructor(
    private readonly models: ModelDirectory,
    private readonly options: LocalEngineOptions,
  ) {
    this.noise = options.noise;
    this.workers = Array.from(
      { length: options.concurrency },
      () => new GenerationThread({ ...options.worker, maxLoadedCheckpoints: options.maxLoadedCheckpoints }, options.logger),
    );
  }

  readonly queue = {
    waiting: (): number => this.waiting.size,
    ahead: (jobId: string): number | null => this.waiting.position(jobId),
  };

  async catalogue(options?: { fresh?: boolean }): Promise<Catalogue> {
    await this.lookForUploads(options?.fresh);
    return this.models.catalogue;
  }

  /**
   * Adopts embeddings another process uploaded to the shared uploadsDir since the last look (an API
   * replica's upload, seen by the other replicas and the workers sharing DATA_DIR). At most one
   * look per UPLOADS_LOOK_MS unless `now`; only sidecars of ids not known here are read.
   */
  private lookForUploads(now = false): Promise<void> {
    const at = Date.now();
    if (!now && this.uploadsLook && at - this.uploadsLook.at < UPLOADS_LOOK_MS) return this.uploadsLook.done;
    const done = this.uploads.then(() => this.adoptUploads());
    this.uploads = done.catch(() => undefined);
    this.uploadsLook = {
      at,
      done: done.catch((err: unknown) => this.options.logger.warn({ err }, 'could not look for uploaded embeddings')),
    };
    return this.uploadsLook.done;
  }

  private async adoptUploads(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.options.uploadsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names.sort()) {
      const id = name.endsWith('.json') ? name.slice(0, -'.json'.length) : null;
      if (!id || this.models.embeddings.has(id) || this.unadoptable.has(name)) continue;
      const sidecarPath = path.join(this.options.uploadsDir, name);
      try {
        const sidecar = uploadSidecarSchema.parse(JSON.parse(await readFile(sidecarPath, 'utf8')));
        const trigger = sidecar.triggerWords[0]!;
        const taken = [...this.models.embeddings.values()].find((e) => e.trigger.toLowerCase() === trigger.toLowerCase());
        if (taken) throw new Error(`its trigger word "${trigger}" is already ${taken.id}'s`);
        const file = path.join(this.options.uploadsDir, path.basename(sidecar.file));
        const read = await this.options.readEmbedding(file);
        this.register(sidecar, file, read);
      } catch (err) {
        this.unadoptable.add(name);
        this.options.logger.warn({ problem: `${sidecarPath}: ${(err as Error).message}` }, 'skipped an uploaded embedding');
      }
    }
  }

  /** Makes an uploaded embedding usable by the next request, and lists it. */
  private register(sidecar: UploadSidecar, file: string, read: { vectors: Float32Array; count: number; width: number }): CatalogueEntry {
    const { id, name } = sidecar;
    const trigger = sidecar.triggerWords[0]!;
    const entry = catalogueEntrySchema.parse({ id, name, kind: 'EMBEDDING', triggerWords: [trigger], vectors: read.count });
    const rows: EmbeddingRows = { id, trigger, vectors: read.vectors, count: read.count };
    this.models.embeddings.set(id, { id, file, trigger, count: read.count, width: read.width });
    this.models.catalogue = new Catalogue([...this.models.catalogue.entries, entry]);
    this.vectors.set(id, Promise.resolve(rows));
    return entry;
  }

  /** Exact CLIP token counts (trigger words of the named embeddings expanded), checked before a job exists. */
  async validate(params: GenerationParams): Promise<FieldIssue[]> {
    const checkpoint = this.models.catalogue.find(params.modelId);
    if (!checkpoint) return [];
    // A tokenizer for this request alone, knowing the triggers it names (ids need only be distinct).
    const base = await this.baseTokenizer(checkpoint.id);
    const named = new Map<string, { trigger: string; count: number }>();
    for (const id of params.embeddings) {
      const e = this.models.embeddings.get(this.models.catalogue.find(id)?.id ?? id);
      if (e) named.set(e.id, e);
    }
    let next = base.baseVocabSize;
    const tokenizer = base.withTriggers(
      [...named.values()].map((e) => ({ trigger: e.trigger, ids: Array.from({ length: e.count }, () => next++) })),
    );
    const activeTriggers = [...named.values()].map((e) => e.trigger);
    const issues: FieldIssue[] = [];
    for (const field of ['prompt', 'negativePrompt'] as const) {
      const count = tokenizer.countTokens(params[field], { activeTriggers });
      const limit = tokenizer.modelMaxLength - 2;
      if (count > limit) {
        issues.push({ path: [field], code: 'TOO_MANY_TOKENS', message: `is ${count} CLIP tokens; the limit is ${limit}` });
      }
    }
    if (checkpoint.inpainting && params.maskImage === undefined) {
      issues.push({
        path: ['modelId'],
        code: 'INPAINTING_ONLY',
        message: `"${params.modelId}" is an inpainting checkpoint: use the inpainting mutation`,
      });
    }
    return issues;
  }

  /** Validates, stores under uploadsDir and registers an embedding; usable by the next request. */
  addEmbedding(upload: EmbeddingUpload): Promise<CatalogueEntry> {
    const next = this.uploads.then(() => this.storeEmbedding(upload));
    this.uploads = next.catch(() => undefined);
    return next;
  }

  private async storeEmbedding(upload: EmbeddingUpload): Promise<CatalogueEntry> {
    const issues: FieldIssue[] = [];
    const name = upload.name.trim();
    if (name.length < 1 || name.length > 100)
      issues.push({ path: ['name'], code: 'INVALID_LENGTH', message: 'must be 1 to 100 characters' });
    const trigger = upload.triggerWord.trim();
    if (!TRIGGER_WORD.test(trigger)) {
      issues.push({
        path: ['triggerWord'],
        code: 'INVALID_VALUE',
        message: 'must be one word (letters, digits, _ - < > .), at most 64 characters',
      });
    } else {
      const taken = [...this.models.embeddings.values()].find((e) => e.trigger.toLowerCase() === trigger.toLowerCase());
      if (taken)
        issues.push({
          path: ['triggerWord'],
          code: 'TRIGGER_TAKEN',
          message: `"${trigger}" is already the trigger word of embedding "${taken.id}"`,
        });
    }
    const ext = path.extname(upload.fileName).toLowerCase();
    let parsed: ReturnType<typeof parseEmbedding> | null = null;
    if (!(EMBEDDING_EXTENSIONS as readonly string[]).includes(ext)) {
      issues.push({ path: ['file'], code: 'UNSUPPORTED_FILE', message: `must be a ${EMBEDDING_EXTENSIONS.join(', ')} file` });
    } else {
      try {
        parsed = parseEmbedding(upload.data, upload.fileName);
      } catch (err) {
        if (!(err instanceof EmbeddingFileError)) throw err;
        issues.push({ path: ['file'], code: 'INVALID_EMBEDDING_FILE', message: err.message });
      }
    }
    if (parsed) {
      const defaultId = this.models.catalogue.find('sd1.5')?.id ?? [...this.models.checkpoints.keys()][0]!;
      const width = (await this.workers[0]!.describe(this.models.checkpoints.get(defaultId)!.dir)).hiddenSize;
      if (parsed.width !== width) {
        issues.push({
          path: ['file'],
          code: 'INCOMPATIBLE_EMBEDDING',
          message: `has vectors of width ${parsed.width}; the checkpoints here need ${width}${widthHint(parsed.width, width) || ' (SD 1.5: 768)'}`,
        });
      }
    }
    if (issues.length > 0 || !parsed) throw new InputValidationError(issues);

    const id = randomUUID();
    const fileName = `${id}${ext}`;
    const sidecar: UploadSidecar = { id, name, triggerWords: [trigger], file: fileName, createdAt: new Date().toISOString() };
    await mkdir(this.options.uploadsDir, { recursive: true });
    const file = path.join(this.options.uploadsDir, fileName);
    // File first, sidecar last (each via rename): a sidecar always points at a complete file.
    await writeFile(`${file}.tmp`, upload.data);
    await rename(`${file}.tmp`, file);
    const sidecarPath = path.join(this.options.uploadsDir, `${id}.json`);
    await writeFile(`${sidecarPath}.tmp`, JSON.stringify(sidecar, null, 2));
    await rename(`${sidecarPath}.tmp`, sidecarPath);

    return this.register(sidecar, file, parsed);
  }

  async submit(job: EngineJob): Promise<EngineSubmission> {
    this.enqueue(job);
    return { handle: job.id, status: this.toStatus(job.id, job) };
  }

  async status(handle: string, job: EngineJob, options?: StatusOptions): Promise<EngineStatus> {
    if (!this.states.has(handle)) this.enqueue(job); // resumed after a restart
    if (options?.preview) this.leasePreview(handle);
    return this.toStatus(handle, job);
  }

  onChange(listener: (handle: string) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** A job's state changed: set it, and say so. */
  private change(jobId: string, state: State): void {
    this.states.set(jobId, state);
    for (const listener of this.changeListeners) listener(jobId);
  }

  previewsMade(): number {
    return this.previews;
  }

  /** Renews a job's preview lease; the thread running it hears only of renewals past half the lease. */
  private leasePreview(handle: string): void {
    const now = Date.now();
    if ((this.previewLeases.get(handle) ?? 0) - now > PREVIEW_LEASE_MS / 2) return;
    const until = now + PREVIEW_LEASE_MS;
    this.previewLeases.set(handle, until);
    this.busy.get(handle)?.previewUntil(handle, until);
  }

  async cancel(handle: string): Promise<void> {
    const s = this.states.get(handle);
    if (!s) return;
    if (s.state === 'PROCESSING') this.busy.get(handle)?.cancel(handle);
    if (s.state === 'QUEUED') {
      this.waiting.remove(handle);
      this.states.set(handle, { state: 'CANCELED' });
      this.forgetLater(handle, READ_RESULT_TTL_MS);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const { timer } of this.expiry.values()) clearTimeout(timer);
    this.expiry.clear();
    // A generation thread terminated inside session.run takes the whole process down (ONNX
    // Runtime aborts), so running generations are canceled first: they stop between steps.
    for (const [jobId, thread] of this.busy) thread.cancel(jobId);
    if (this.runs.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(this.runs), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_CANCEL_WAIT_MS)))]);
      clearTimeout(timer);
    }
    await Promise.all([...this.workers.map((w) => w.close()), this.options.imageFetcher.close()]);
  }

  private enqueue(job: EngineJob): void {
    if (this.states.has(job.id)) return;
    this.states.set(job.id, { state: 'QUEUED', job });
    this.waiting.push(job.ownerId ?? '', job.id, job.id);
    this.pump();
  }

  private toStatus(handle: string, job: EngineJob): EngineStatus {
    const s = this.states.get(handle);
    switch (s?.state) {
      case 'QUEUED':
        return { state: 'QUEUED', queuePosition: this.waiting.position(handle) ?? 0 };
      case 'PROCESSING': {
        const preview = s.preview;
        s.preview = undefined; // each preview is reported once
        return { state: 'PROCESSING', step: s.step, totalSteps: s.totalSteps, startedAt: s.startedAt, ...(preview ? { preview } : {}) };
      }
      case 'SUCCESS':
        this.forgetLater(handle, READ_RESULT_TTL_MS);
        return { state: 'SUCCESS', images: s.images, startedAt: s.startedAt };
      case 'FAILURE':
        this.forgetLater(handle, READ_RESULT_TTL_MS);
        return { state: 'FAILURE', code: s.code, message: s.message };
      case 'CANCELED':
        this.forgetLater(handle, READ_RESULT_TTL_MS);
        return { state: 'FAILURE', code: JobErrorCode.ENGINE_FAILED, message: 'canceled' };
      default:
        return { state: 'LOST', message: `the local engine has no job ${job.id}` };
    }
  }

  /** Drops a finished job's entry after ttlMs, unless it is already due sooner. */
  private forgetLater(handle: string, ttlMs: number): void {
    const at = Date.now() + ttlMs;
    const current = this.expiry.get(handle);
    if (current && current.at <= at) return;
    if (current) clearTimeout(current.timer);
    const timer = setTimeout(() => {
      this.expiry.delete(handle);
      this.states.delete(handle);
    }, ttlMs);
    timer.unref();
    this.expiry.set(handle, { at, timer });
  }

  private pump(): void {
    while (!this.closed && this.running < this.options.concurrency && this.waiting.size > 0) {
      const { id } = this.waiting.shift()!;
      const s = this.states.get(id);
      if (s?.state !== 'QUEUED') continue;
      this.running++;
      const run: Promise<void> = this.run(s.job).finally(() => {
        this.running--;
        this.runs.delete(run);
        this.pump();
      });
      this.runs.add(run);
    }
  }

  private async run(job: EngineJob): Promise<void> {
    const p = job.params;
    // The steps the run will report (the thread's progress says the same from its first step): all
    // of them, or the ones strength leaves to run from an init image (diffusers' get_timesteps).
    const totalSteps = p.initImage ? p.numInferenceSteps - strengthStartIndex(p.numInferenceSteps, p.strength ?? 0.8) : p.numInferenceSteps;
    const processing: State = { state: 'PROCESSING', job, step: 0, totalSteps, startedAt: new Date() };
    this.change(job.id, processing);
    try {
      const checkpointId = this.models.catalogue.find(p.modelId)?.id ?? p.modelId;
      const checkpoint = this.models.checkpoints.get(checkpointId);
      if (!checkpoint) throw new GenerationFailed(`no checkpoint "${p.modelId}" is installed any more`, 'engine');
      const embeddings = await Promise.all(p.embeddings.map((id) => this.embeddingRows(id)));
      const initImage = p.initImage ? await this.options.imageFetcher.fetch(p.initImage, 'initImage') : undefined;
      const maskImage = p.maskImage ? await this.options.imageFetcher.fetch(p.maskImage, 'maskImage') : undefined;
      // pump() never runs more jobs than workers, so one of them is free.
      const worker = this.workers.find((w) => ![...this.busy.values()].includes(w))!;
      this.busy.set(job.id, worker);
      const generating = worker.generate(
        {
          type: 'generate',
          jobId: job.id,
          checkpointDir: checkpoint.dir,
          prompt: p.prompt,
          negativePrompt: p.negativePrompt,
          steps: p.numInferenceSteps,
          guidanceScale: p.guidanceScale,
          samples: p.samples,
          width: p.width,
          height: p.height,
          seed: p.seed,
          // Jobs recorded before the noise source was recorded draw from today's.
          noise: p.noise ?? this.noise,
          // The request's, else the checkpoint's own (manifest.json), else LOCAL_SCHEDULER.
          scheduler: p.scheduler ?? checkpoint.scheduler ?? this.options.defaultScheduler,
          embeddings,
          initImage,
          maskImage,
          strength: p.strength,
          // Inpainting only; absent (jobs recorded before these were asked): the pipeline's defaults, the same as the API's.
          maskBlur: p.maskBlur,
          keepUnmasked: p.keepUnmasked,
          safetyChecker: p.safetyChecker,
        },
        (step, total, pixels) => {
          processing.step = step;
          processing.totalSteps = total;
          if (!pixels) return;
          this.previews++;
          previewDataUrl(pixels, p.width, p.height).then(
            (url) => (processing.preview = url),
            (err: unknown) => this.options.logger.warn({ err, jobId: job.id }, 'a preview could not be encoded'),
          );
        },
      );
      const lease = this.previewLeases.get(job.id);
      if (lease) worker.previewUntil(job.id, lease);
      const images = await generating;
      this.change(job.id, {
        state: 'SUCCESS',
        images: images.map((i) => ({ data: i.data, contentType: 'image/png', nsfw: i.nsfw })),
        startedAt: processing.startedAt,
      });
    } catch (err) {
      if (err instanceof GenerationCanceled) {
        this.change(job.id, { state: 'CANCELED' });
        this.forgetLater(job.id, READ_RESULT_TTL_MS); // nobody polls a canceled job
        return;
      }
      const failure = failureOf(err);
      this.change(job.id, { state: 'FAILURE', ...failure });
      // A stop ends running generations on purpose; those jobs resume after the restart.
      if (failure.code === JobErrorCode.ENGINE_FAILED && !this.closed) {
        this.options.logger.error({ err, jobId: job.id }, 'local generation failed');
      }
    } finally {
      this.busy.delete(job.id);
      this.previewLeases.delete(job.id);
      this.forgetLater(job.id, UNREAD_RESULT_TTL_MS);
    }
  }

  private async embeddingRows(idOrAlias: string): Promise<EmbeddingRows> {
    // Uploaded to an API process after this one last looked (this is a worker, or another replica).
    if (!this.models.catalogue.find(idOrAlias)) await this.lookForUploads(true);
    const id = this.models.catalogue.find(idOrAlias)?.id ?? idOrAlias;
    let rows = this.vectors.get(id);
    if (!rows) {
      const info = this.models.embeddings.get(id);
      if (!info) throw new Error(`no embedding "${id}" is installed here (an upload reaches other processes through a shared DATA_DIR)`);
      rows = this.options.readEmbedding(info.file).then((e) => ({ id, trigger: info.trigger, vectors: e.vectors, count: e.count }));
      // A file that cannot be read now may be fixed on disk: only a good read is kept.
      rows.catch(() => this.vectors.delete(id));
      this.vectors.set(id, rows);
    }
    return rows;
  }

  /** The checkpoint's tokenizer without triggers: each request adds its own (withTriggers). */
  private baseTokenizer(checkpointId: string): Promise<ClipTokenizer> {
    let t = this.tokenizers.get(checkpointId);
    if (!t) {
      t = ClipTokenizer.fromFiles(`${this.models.checkpoints.get(checkpointId)!.dir}/tokenizer`);
      t.catch(() => this.tokenizers.delete(checkpointId));
      this.tokenizers.set(checkpointId, t);
    }
    return t;
  }
}
