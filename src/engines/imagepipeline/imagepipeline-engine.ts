import type { Logger } from 'pino';
import { toRestRequestBody, type RestReply } from '../../contract/rest-protocol.js';
import { JobErrorCode } from '../../generation/request.js';
import type { Catalogue } from '../../catalogue/catalogue.js';
import type { Engine, EngineJob, EngineStatus, EngineSubmission, GeneratedImage, StatusOptions } from '../engine.js';
import { EngineProtocolError, EngineUnavailableError } from '../engine.js';
import { ImagePipelineRestClient, type RestClientOptions } from './rest-client.js';
import { decodeWorkerHandle, encodeWorkerHandle } from './worker-handle.js';
import { mergeCatalogues, WorkerGraphQLClient } from './worker-graphql.js';
import { WorkerPool, type PoolWorker } from './worker-pool.js';

export interface ImagePipelineEngineOptions {
  workers: { url: string; apiKey: string | undefined }[];
  timeoutMs: number;
  retries: number;
  maxImageBytes: number;
  retryBaseDelayMs?: number;
  probeIntervalMs: number;
  workerGraceMs: number;
  /** A fixed catalogue (from IMAGEPIPELINE_CATALOGUE); absent: asked of the workers. */
  catalogue: Catalogue | undefined;
  /** Used until the workers' catalogue is known, or when they cannot tell. */
  fallbackCatalogue: Catalogue;
  logger: Logger;
}

/** How often a discovered catalogue is asked for again (workers may gain models). */
const CATALOGUE_REFRESH_MS = 60_000;
/** How soon to ask again while no worker has told its catalogue. */
const CATALOGUE_RETRY_MS = 2_000;
/** How long a request waits for a catalogue answer before going on with the last one known. */
const CATALOGUE_WAIT_MS = 1_500;
/** Failure codes a worker sends that blame the request, and so stay as they are. */
const REQUEST_FAULTS: ReadonlySet<string> = new Set([JobErrorCode.INVALID_INPUT, JobErrorCode.IMAGE_UNAVAILABLE]);

/**
 * An engine that runs jobs on remote services speaking the contract's REST protocol: the hosted
 * ImagePipeline API, or other instances of this server acting as workers behind this one (a
 * gateway). Each job goes to the healthy worker with the fewest of our jobs in flight; its
 * handle records which worker holds it.
 */
export class ImagePipelineEngine implements Engine {
  readonly name = 'imagepipeline';
  readonly pool: WorkerPool;
  private readonly graphql: WorkerGraphQLClient;
  private models: Catalogue;
  /** When the workers were last asked for their catalogue, and whether any ever answered. */
  private catalogueCheckedAt = -Infinity;
  private catalogueKnown = false;
  private catalogueRefresh: Promise<void> | null = null;

  constructor(private readonly options: ImagePipelineEngineOptions) {
    this.pool = new WorkerPool(
      options.workers.map(({ url, apiKey }) => ({ url, client: new ImagePipelineRestClient(clientOptions(options, url, apiKey)) })),
      { probeIntervalMs: options.probeIntervalMs, graceMs: options.workerGraceMs },
      options.logger,
    );
    this.graphql = new WorkerGraphQLClient(Math.min(options.timeoutMs, 10_000));
    this.models = options.catalogue ?? options.fallbackCatalogue;
    this.pool.start();
  }

  async catalogue(): Promise<Catalogue> {
    if (this.options.catalogue) return this.models;
    const age = Date.now() - this.catalogueCheckedAt;
    if (!this.catalogueKnown && age >= CATALOGUE_RETRY_MS) {
      // Not known yet (workers still starting, say): the caller waits for the answer, but only
      // briefly, so a worker that hangs or a hosted upstream without GraphQL never stalls requests.
      const asked = this.refreshCatalogue();
      await Promise.race([asked, new Promise((resolve) => setTimeout(resolve, CATALOGUE_WAIT_MS).unref())]);
    } else if (this.catalogueKnown && age >= CATALOGUE_REFRESH_MS) {
      void this.refreshCatalogue();
    }
    return this.models;
  }

  async submit(job: EngineJob): Promise<EngineSubmission> {
    // Aliases are ours; the upstream gets the canonical ids the catalogue maps them to.
    const canonical = (id: string) => this.models.find(id)?.id ?? id;
    const params = {
      ...job.params,
      modelId: canonical(job.params.modelId),
      embeddings: job.params.embeddings.map(canonical),
    };
    const body = toRestRequestBody(job.mode, params);
    const tried = new Set<string>();
    let lastError: EngineUnavailableError | null = null;
    // A worker that cannot be reached is skipped for the next one at once; refusals are answers.
    for (;;) {
      const worker = await this.pool.pickOrProbe(tried);
      if (!worker) {
        const why = tried.size > 0 && lastError ? lastError.message : this.pool.describeUnhealthy();
        throw new EngineUnavailableError(`no worker could take the job: ${why}`, { cause: lastError });
      }
      tried.add(worker.url);
      let reply: RestReply;
      try {
        reply = await worker.client.submit(job.mode, body, job.id);
        this.pool.observe(worker, undefined);
      } catch (err) {
        this.pool.observe(worker, err);
        if (!(err instanceof EngineUnavailableError)) throw err;
        lastError = err;
        continue;
      }
      const status = await this.toStatus(reply, job, worker);
      if (!isFinal(status)) worker.jobs.add(job.id);
      const handle = reply.id ? encodeWorkerHandle({ worker: worker.url, id: reply.id }) : '';
      return { handle, status };
    }
  }

  async status(handle: string, job: EngineJob, options?: StatusOptions): Promise<EngineStatus> {
    const { worker: url, id } = decodeWorkerHandle(handle, this.pool.first.url);
    if (!id) return { state: 'LOST', message: 'the engine gave this job no id to poll' };
    const worker = this.pool.get(url);
    if (!worker) {
      return { state: 'LOST', message: `the worker ${url} holding this job is no longer configured`, retryElsewhere: true };
    }
    worker.jobs.add(job.id); // rebuilds the load figures after a restart
    if (!this.pool.admit(worker)) {
      if (this.pool.givenUp(worker)) {
        worker.jobs.delete(job.id);
        return {
          state: 'LOST',
          message: `the worker ${url} holding this job stopped answering (${worker.lastError ?? 'unreachable'})`,
          retryElsewhere: true,
        };
      }
      // Within the grace period: wait for the probe to find it back, without calling it.
      throw new EngineUnavailableError(`the worker ${url} is not answering: ${worker.lastError ?? 'unreachable'}`);
    }
    let status: EngineStatus;
    try {
      // A worker that is this server passes its engine's previews along when asked.
      const reply = await worker.client.status(job.mode, id, { preview: options?.preview });
      this.pool.observe(worker, undefined);
      status = reply ? await this.toStatus(reply, job, worker) : { state: 'LOST', message: `the worker ${url} no longer knows job ${id}` };
    } catch (err) {
      this.pool.observe(worker, err);
      if (!(err instanceof EngineUnavailableError)) worker.jobs.delete(job.id);
      throw err;
    }
    if (isFinal(status)) worker.jobs.delete(job.id);
    return status;
  }

  /**
   * The contract's REST protocol has no cancel call. Workers that are instances of this server
   * are asked over GraphQL; elsewhere the upstream finishes and the result is dropped.
   */
  async cancel(handle: string, job: EngineJob): Promise<void> {
    const { worker: url, id } = decodeWorkerHandle(handle, this.pool.first.url);
    const worker = this.pool.get(url);
    if (!worker || !id) return;
    worker.jobs.delete(job.id);
    if (!worker.healthy) return;
    await this.graphql.cancelJob(this.endpoint(worker), id);
  }

  async close(): Promise<void> {
    this.pool.close();
    await Promise.all([...this.pool.workers.map((w) => w.client.close()), this.graphql.close()]);
  }

  private endpoint(worker: PoolWorker) {
    return { url: worker.url, apiKey: this.options.workers.find((w) => w.url === worker.url)?.apiKey };
  }

  /** Asks every worker for its models over GraphQL; one request at a time shares the answer. */
  private refreshCatalogue(): Promise<void> {
    if (this.catalogueRefresh) return this.catalogueRefresh;
    // Stamped when asked, not when answered: while an answer is slow, other callers do not wait.
    this.catalogueCheckedAt = Date.now();
    this.catalogueRefresh = (async () => {
      const lists = await Promise.all(this.pool.workers.map((w) => this.graphql.models(this.endpoint(w))));
      const found = lists.filter((l): l is NonNullable<typeof l> => l !== null && l.length > 0);
      if (found.length === 0) return;
      try {
        this.models = mergeCatalogues(found);
        this.catalogueKnown = true;
      } catch (err) {
        this.options.logger.warn({ err }, 'the workers sent catalogues that cannot be merged; keeping the previous one');
      }
    })().finally(() => (this.catalogueRefresh = null));
    return this.catalogueRefresh;
  }

  private async toStatus(reply: RestReply, job: EngineJob, worker: PoolWorker): Promise<EngineStatus> {
    switch (reply.status) {
      case 'FAILURE': {
        // A worker that is this server says when the request itself was at fault; that holds
        // here too. Any other code is the engine's business: ENGINE_FAILED, with its message.
        const code = reply.code && REQUEST_FAULTS.has(reply.code) ? reply.code : JobErrorCode.ENGINE_FAILED;
        return { state: 'FAILURE', code, message: reply.error };
      }
      case 'PENDING': {
        const started = reply.state === 'PROCESSING' || (reply.state === undefined && ((reply.step ?? 0) > 0 || (reply.progress ?? 0) > 0));
        if (!started) return { state: 'QUEUED', queuePosition: reply.queue_position ?? null };
        const totalSteps = reply.total_steps || job.params.numInferenceSteps;
        const step = reply.step ?? Math.round((reply.progress ?? 0) * totalSteps);
        return { state: 'PROCESSING', step: Math.min(step, totalSteps), totalSteps, ...(reply.preview ? { preview: reply.preview } : {}) };
      }
      case 'SUCCESS': {
        if (reply.nsfw && reply.nsfw.length !== reply.download_urls.length) {
          throw new EngineProtocolError('the engine sent a different number of nsfw flags than download_urls');
        }
        const images: GeneratedImage[] = [];
        // One at a time: results are few (at most 4) and this keeps memory flat under load.
        for (const [i, url] of reply.download_urls.entries()) {
          const { data, contentType } = await worker.client.download(url);
          images.push({ data, contentType, nsfw: reply.nsfw?.[i] ?? null });
        }
        return { state: 'SUCCESS', images };
      }
    }
  }
}

const isFinal = (s: EngineStatus) => s.state === 'SUCCESS' || s.state === 'FAILURE' || s.state === 'LOST';

function clientOptions(options: ImagePipelineEngineOptions, baseUrl: string, apiKey: string | undefined): RestClientOptions {
  return {
    baseUrl,
    apiKey,
    timeoutMs: options.timeoutMs,
    retries: options.retries,
    maxImageBytes: options.maxImageBytes,
    retryBaseDelayMs: options.retryBaseDelayMs,
  };
}
