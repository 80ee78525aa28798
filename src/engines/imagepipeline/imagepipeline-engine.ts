import type { Logger } from 'pino';
import { toRestRequestBody, type RestReply } from '../../contract/rest-protocol.js';
import { JobErrorCode } from '../../generation/request.js';
import { Catalogue } from '../../catalogue/catalogue.js';
import type { Engine, EngineJob, EngineStatus, EngineSubmission, GeneratedImage, StatusOptions } from '../engine.js';
import { EngineProtocolError } from '../engine.js';
import { ImagePipelineRestClient } from './rest-client.js';
import { decodeUpstreamHandle, encodeUpstreamHandle, sameUpstream } from './upstream-handle.js';
import { UpstreamGraphQLClient } from './upstream-graphql.js';
import { UpstreamHealth } from './upstream-health.js';

export interface ImagePipelineEngineOptions {
  /** The one upstream's base URL: the hosted service, or another instance of this server. */
  url: string;
  apiKey: string | undefined;
  timeoutMs: number;
  retries: number;
  maxImageBytes: number;
  retryBaseDelayMs?: number;
  probeIntervalMs: number;
  /** A fixed catalogue (from IMAGEPIPELINE_CATALOGUE); absent: asked of the upstream. */
  catalogue: Catalogue | undefined;
  /** Used until the upstream's catalogue is known, or when it cannot tell. */
  fallbackCatalogue: Catalogue;
  logger: Logger;
}

/** How often a discovered catalogue is asked for again (the upstream may gain models). */
const CATALOGUE_REFRESH_MS = 60_000;
/** How soon to ask again while the upstream has not told its catalogue. */
const CATALOGUE_RETRY_MS = 2_000;
/** How long a request waits for a catalogue answer before going on with the last one known. */
const CATALOGUE_WAIT_MS = 1_500;
/** Failure codes an upstream sends that blame the request, and so stay as they are. */
const REQUEST_FAULTS: ReadonlySet<string> = new Set([JobErrorCode.INVALID_INPUT, JobErrorCode.IMAGE_UNAVAILABLE]);

/**
 * An engine that runs jobs on one remote service speaking the contract's REST protocol: the
 * hosted ImagePipeline API, or another instance of this server. Calls are retried with back-off
 * (the REST client), go through a circuit breaker with a /healthz probe (UpstreamHealth), and
 * submissions carry the job id as Idempotency-Key. Several machines are the queue's business
 * (REDIS_URL and npm run worker), not this engine's: each worker may run one of these against
 * its own upstream.
 */
export class ImagePipelineEngine implements Engine {
  readonly name = 'imagepipeline';
  readonly health: UpstreamHealth;
  private readonly url: string;
  private readonly client: ImagePipelineRestClient;
  private readonly graphql: UpstreamGraphQLClient;
  private models: Catalogue;
  /** When the upstream was last asked for its catalogue, and whether it ever answered. */
  private catalogueCheckedAt = -Infinity;
  private catalogueKnown = false;
  private catalogueRefresh: Promise<void> | null = null;

  constructor(private readonly options: ImagePipelineEngineOptions) {
    this.url = options.url;
    this.client = new ImagePipelineRestClient({
      baseUrl: options.url,
      apiKey: options.apiKey,
      timeoutMs: options.timeoutMs,
      retries: options.retries,
      maxImageBytes: options.maxImageBytes,
      retryBaseDelayMs: options.retryBaseDelayMs,
    });
    this.health = new UpstreamHealth(options.url, this.client, { probeIntervalMs: options.probeIntervalMs }, options.logger);
    this.graphql = new UpstreamGraphQLClient(Math.min(options.timeoutMs, 10_000));
    this.models = options.catalogue ?? options.fallbackCatalogue;
    this.health.start();
  }

  async catalogue(): Promise<Catalogue> {
    if (this.options.catalogue) return this.models;
    const age = Date.now() - this.catalogueCheckedAt;
    if (!this.catalogueKnown && age >= CATALOGUE_RETRY_MS) {
      // Not known yet (the upstream still starting, say): the caller waits for the answer, but only
      // briefly, so an upstream that hangs or a hosted one without GraphQL never stalls requests.
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
    // An open circuit: one shared probe first; if the upstream still does not answer, the
    // submitter retries later within its failure budget (then ENGINE_UNREACHABLE).
    if (!(await this.health.admitOrProbe())) throw this.health.notAnswering();
    let reply: RestReply;
    try {
      reply = await this.client.submit(job.mode, body, job.id);
      this.health.observe(undefined);
    } catch (err) {
      this.health.observe(err);
      throw err;
    }
    const status = await this.toStatus(reply, job);
    const handle = reply.id ? encodeUpstreamHandle({ upstream: this.url, id: reply.id }) : '';
    return { handle, status };
  }

  async status(handle: string, job: EngineJob, options?: StatusOptions): Promise<EngineStatus> {
    const { upstream, id } = decodeUpstreamHandle(handle, this.url);
    if (!id) return { state: 'LOST', message: 'the engine gave this job no id to poll' };
    if (!sameUpstream(upstream, this.url)) {
      // Submitted to another upstream (one of an old gateway's list, or before IMAGEPIPELINE_URL changed).
      return {
        state: 'LOST',
        message: `the job was submitted to the upstream ${upstream}, which is no longer configured (IMAGEPIPELINE_URL is ${this.url})`,
      };
    }
    // An open circuit: no call, the poller counts it against its failure budget.
    if (!this.health.admit()) throw this.health.notAnswering();
    try {
      // An upstream that is this server passes its engine's previews along when asked.
      const reply = await this.client.status(job.mode, id, { preview: options?.preview });
      this.health.observe(undefined);
      return reply ? await this.toStatus(reply, job) : { state: 'LOST', message: `the upstream ${this.url} no longer knows job ${id}` };
    } catch (err) {
      this.health.observe(err);
      throw err;
    }
  }

  /**
   * The contract's REST protocol has no cancel call. An upstream that is an instance of this
   * server is asked over GraphQL; elsewhere the upstream finishes and the result is dropped.
   */
  async cancel(handle: string): Promise<void> {
    const { upstream, id } = decodeUpstreamHandle(handle, this.url);
    if (!id || !sameUpstream(upstream, this.url) || !this.health.healthy) return;
    await this.graphql.cancelJob(this.endpoint(), id);
  }

  async close(): Promise<void> {
    this.health.close();
    await Promise.all([this.client.close(), this.graphql.close()]);
  }

  private endpoint() {
    return { url: this.url, apiKey: this.options.apiKey };
  }

  /** Asks the upstream for its models over GraphQL; one request at a time shares the answer. */
  private refreshCatalogue(): Promise<void> {
    if (this.catalogueRefresh) return this.catalogueRefresh;
    // Stamped when asked, not when answered: while an answer is slow, other callers do not wait.
    this.catalogueCheckedAt = Date.now();
    this.catalogueRefresh = (async () => {
      const list = await this.graphql.models(this.endpoint());
      if (!list || list.length === 0) return;
      try {
        this.models = new Catalogue(list);
        this.catalogueKnown = true;
      } catch (err) {
        this.options.logger.warn({ err }, 'the upstream sent a catalogue that cannot be used; keeping the previous one');
      }
    })().finally(() => (this.catalogueRefresh = null));
    return this.catalogueRefresh;
  }

  private async toStatus(reply: RestReply, job: EngineJob): Promise<EngineStatus> {
    switch (reply.status) {
      case 'FAILURE': {
        // An upstream that is this server says when the request itself was at fault; that holds
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
          const { data, contentType } = await this.client.download(url);
          images.push({ data, contentType, nsfw: reply.nsfw?.[i] ?? null });
        }
        return { state: 'SUCCESS', images };
      }
    }
  }
}
