import { randomInt, randomUUID } from 'node:crypto';
import { jobLogger, type Logger } from '../logger.js';
import type { Principal } from '../auth/api-key.js';
import { PREVIEW_LEASE_MS, type Engine } from '../engines/engine.js';
import { ApiError, notFound } from '../errors.js';
import { checkAgainstCatalogue } from '../catalogue/catalogue.js';
import { isTerminal, type Job } from './job.js';
import { type GenerationParams, type JobMode } from '../generation/request.js';
import type { JobEvents } from './job-events.js';
import { InputValidationError, MAX_SEED, parseGenerationInput, type FieldIssue } from '../generation/input.js';
import { checkIdempotencyKey, requestFingerprint } from './idempotency.js';
import {
  DuplicateIdempotencyKeyError,
  StorageUnavailableError,
  type IdempotencyRecord,
  type JobListQuery,
  type JobPage,
  type JobStore,
} from './job-store.js';
import { JobStream } from './job-stream.js';
import { storageUnavailableAnswer } from '../storage/storage-fault.js';
import { PreviewLeases } from './preview-leases.js';
import type { JobAdmission } from '../limits/job-admission.js';
import type { JobRunner } from './job-runner.js';

export const MAX_PAGE_SIZE = 100;

/**
 * What callers can do with jobs: create, read, list, cancel, watch. Every method takes the
 * caller's principal; another caller's job behaves exactly like one that does not exist.
 */
export class JobService {
  private readonly previews: PreviewLeases;
  private readonly createdListeners: ((job: Job) => void)[] = [];

  constructor(
    private readonly deps: {
      store: JobStore;
      events: JobEvents;
      engine: Engine;
      runner: JobRunner;
      admission: JobAdmission;
      /** What is wrong with a URL, as far as can be judged now (scheme, private IP literals, a data: URL's bytes); null: fine. */
      outboundUrls: { webhook: (url: string) => string | null; image: (url: string) => Promise<string | null> };
      logger: Logger;
      now?: () => Date;
    },
  ) {
    this.previews = new PreviewLeases(deps.runner, deps.events, PREVIEW_LEASE_MS);
  }

  /**
   * Validates, persists (committed before this resolves) and queues a job; never waits for
   * generation. With an idempotency key, a repeat of an earlier request returns that job.
   */
  async create(principal: Principal, mode: JobMode, input: unknown, options: { idempotencyKey?: string | null } = {}): Promise<Job> {
    const idempotencyKey = options.idempotencyKey ?? null;
    const keyIssue = idempotencyKey === null ? null : checkIdempotencyKey(idempotencyKey);
    if (keyIssue) throw new InputValidationError([keyIssue]);
    let seedWasGiven = true;
    const { params, webhookUrl } = parseGenerationInput(mode, input, () => {
      seedWasGiven = false;
      return randomInt(0, MAX_SEED + 1);
    });
    const urlIssues: FieldIssue[] = [];
    const refuse = (field: 'webhookUrl' | 'initImage' | 'maskImage', refusal: string | null) => {
      if (refusal) urlIssues.push({ path: [field], code: 'INVALID_VALUE', message: refusal });
    };
    const images = this.deps.outboundUrls.image;
    refuse('initImage', params.initImage ? await images(params.initImage) : null);
    refuse('maskImage', params.maskImage ? await images(params.maskImage) : null);
    refuse('webhookUrl', webhookUrl ? this.deps.outboundUrls.webhook(webhookUrl) : null);
    if (urlIssues.length > 0) throw new InputValidationError(urlIssues);
    const idempotency =
      idempotencyKey === null
        ? undefined
        : { key: idempotencyKey, fingerprint: requestFingerprint(mode, params, seedWasGiven, webhookUrl) };
    if (idempotency) {
      const earlier = await this.replay(principal, idempotency);
      if (earlier) return earlier;
    }
    // The cap before the costlier checks (the job counts from here, so creates racing each other
    // cannot pass it together, and stops counting if this create fails); the rate counts only
    // jobs actually created, so a client fixing its input is not locked out by its own refused attempts.
    const id = randomUUID();
    await this.deps.admission.reserve(principal.keyId, id);
    let created: Job | null = null;
    try {
      created = await this.createReserved(principal, id, mode, params, webhookUrl, idempotency);
    } finally {
      if (created?.id !== id) this.deps.admission.finished(principal.keyId, id);
    }
    if (created.id === id) await this.deps.runner.enqueue(created);
    return created;
  }

  /** A create past the cap: the remaining checks, the rate, the insert. Returns an earlier job for a repeated idempotency key. */
  private async createReserved(
    principal: Principal,
    id: string,
    mode: JobMode,
    params: GenerationParams,
    webhookUrl: string | null,
    idempotency: IdempotencyRecord | undefined,
  ): Promise<Job> {
    let issues = checkAgainstCatalogue(params, await this.deps.engine.catalogue());
    // Perhaps uploaded through another replica a moment ago: the engine looks again before refusing.
    if (issues.some((i) => i.code === 'UNKNOWN_EMBEDDING')) {
      issues = checkAgainstCatalogue(params, await this.deps.engine.catalogue({ fresh: true }));
    }
    if (issues.length === 0 && this.deps.engine.validate) issues.push(...(await this.deps.engine.validate(params, mode)));
    if (issues.length > 0) throw new InputValidationError(issues);
    await this.deps.admission.takeRateToken(principal.keyId);
    // Checked as sent (so issue paths point at the client's indexes), stored once each.
    params.embeddings = [...new Set(params.embeddings)];
    // Recorded after the idempotency fingerprint, which stays the request's alone: a repeat is
    // the same request whatever the engine's noise source is by then.
    if (this.deps.engine.noise) params.noise = this.deps.engine.noise;
    const job: Job = {
      id,
      ownerId: principal.keyId,
      mode,
      status: 'PENDING',
      params,
      engine: this.deps.engine.name,
      engineHandle: null,
      progress: null,
      engineQueuePosition: null,
      requeues: 0,
      webhookUrl,
      images: [],
      error: null,
      version: 1,
      createdAt: this.deps.now?.() ?? new Date(),
      startedAt: null,
      finishedAt: null,
    };
    try {
      await this.deps.store.insert(job, idempotency);
    } catch (err) {
      // The same key raced in from another request: theirs was first, and is the answer.
      if (err instanceof DuplicateIdempotencyKeyError && idempotency) {
        const earlier = await this.replay(principal, idempotency);
        if (earlier) return earlier;
      }
      if (err instanceof StorageUnavailableError) {
        this.deps.logger.error({ err: err.cause }, `cannot record new jobs: ${err.message}`);
        throw storageUnavailableAnswer(err, 'record new jobs', 'nothing was created');
      }
      throw err;
    }
    jobLogger(this.deps.logger, job.id).info({ mode, keyId: job.ownerId, webhook: webhookUrl !== null }, 'job created');
    for (const listener of this.createdListeners) listener(job);
    return job;
  }

  /** Called with each job once it is persisted (metrics). */
  onCreated(listener: (job: Job) => void): void {
    this.createdListeners.push(listener);
  }

  /** The job made earlier with this idempotency key; refuses a different request under the same key. */
  private async replay(principal: Principal, idempotency: IdempotencyRecord): Promise<Job | null> {
    const earlier = await this.deps.store.findByIdempotencyKey(principal.keyId, idempotency.key);
    if (!earlier) return null;
    if (earlier.fingerprint !== idempotency.fingerprint) {
      throw new ApiError(
        'IDEMPOTENCY_KEY_REUSED',
        `the idempotency key "${idempotency.key}" was already used for a different request (job ${earlier.job.id})`,
        422,
      );
    }
    return earlier.job;
  }

  async get(principal: Principal, id: string): Promise<Job | null> {
    const job = await this.deps.store.get(id);
    return job && job.ownerId === principal.keyId ? job : null;
  }

  list(principal: Principal, query: JobListQuery): Promise<JobPage> {
    if (!Number.isInteger(query.first) || query.first < 1 || query.first > MAX_PAGE_SIZE) {
      throw new InputValidationError([{ path: ['first'], code: 'OUT_OF_RANGE', message: `must be between 1 and ${MAX_PAGE_SIZE}` }]);
    }
    return this.deps.store.listForOwner(principal.keyId, query);
  }

  /** Cancels a job that has not finished. Canceling a canceled job returns it unchanged. */
  async cancel(principal: Principal, id: string): Promise<Job> {
    const job = await this.get(principal, id);
    if (!job) throw notFound('job', id);
    if (job.status === 'CANCELED') return job;
    if (isTerminal(job.status)) {
      throw new ApiError('JOB_ALREADY_FINISHED', `job "${id}" already finished with status ${job.status}`, 409);
    }
    const canceled = await this.deps.runner.cancel(job);
    if (canceled.status !== 'CANCELED') {
      throw new ApiError('JOB_ALREADY_FINISHED', `job "${id}" already finished with status ${canceled.status}`, 409);
    }
    return canceled;
  }

  /**
   * The job's states from now on: current state first, ending after a terminal one. preview:
   * the caller wants live previews in the progress (asked of the engine only while someone does).
   */
  async watch(principal: Principal, id: string, options: { preview?: boolean } = {}): Promise<AsyncIterableIterator<Job>> {
    let release: (() => void) | undefined;
    const stream = new JobStream(this.deps.events, id, () => release?.());
    const job = await this.get(principal, id);
    if (!job) {
      await stream.return();
      throw notFound('job', id);
    }
    if (options.preview && !isTerminal(job.status)) release = this.deps.runner.watchPreview(id);
    return stream.begin(job);
  }

  /**
   * For callers that poll rather than subscribe (the REST status endpoint with preview=1): keeps
   * previews of this unfinished job coming for a while, and returns the newest one not yet taken.
   * The job must come from get(), which checked its owner.
   */
  pollPreview(job: Job): string | undefined {
    return isTerminal(job.status) ? undefined : this.previews.take(job.id);
  }

  /** How many jobs start before this PENDING one on its engine; null once started, or unknown. */
  queuePosition(job: Job): Promise<number | null> {
    return this.deps.runner.queuePosition(job);
  }
}
