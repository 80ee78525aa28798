import { toRestRequestBody, type RestReply } from '../../contract/rest-protocol.js';
import { JobErrorCode } from '../../jobs/job.js';
import type { Catalogue } from '../../models/catalogue.js';
import type { Engine, EngineJob, EngineStatus, EngineSubmission, GeneratedImage } from '../engine.js';
import { EngineProtocolError } from '../engine.js';
import { ImagePipelineRestClient, type RestClientOptions } from './rest-client.js';

/**
 * An engine that runs jobs on a remote service speaking the contract's REST protocol: the
 * hosted ImagePipeline API, or another instance of this server acting as a worker.
 */
export class ImagePipelineEngine implements Engine {
  readonly name = 'imagepipeline';
  private readonly client: ImagePipelineRestClient;

  constructor(
    options: RestClientOptions,
    private readonly models: Catalogue,
  ) {
    this.client = new ImagePipelineRestClient(options);
  }

  async catalogue(): Promise<Catalogue> {
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
    const reply = await this.client.submit(job.mode, toRestRequestBody(job.mode, params));
    const status = await this.toStatus(reply, job);
    return { handle: reply.id ?? '', status };
  }

  async status(handle: string, job: EngineJob): Promise<EngineStatus> {
    if (!handle) return { state: 'LOST', message: 'the engine gave this job no id to poll' };
    const reply = await this.client.status(job.mode, handle);
    if (!reply) return { state: 'LOST', message: `the engine no longer knows job ${handle}` };
    return this.toStatus(reply, job);
  }

  /** The contract's REST protocol has no cancel call: the upstream finishes and the result is dropped. */
  async cancel(): Promise<void> {}

  close(): Promise<void> {
    return this.client.close();
  }

  private async toStatus(reply: RestReply, job: EngineJob): Promise<EngineStatus> {
    switch (reply.status) {
      case 'FAILURE':
        return { state: 'FAILURE', code: JobErrorCode.ENGINE_FAILED, message: reply.error };
      case 'PENDING': {
        const started =
          reply.state === 'PROCESSING' || (reply.state === undefined && ((reply.step ?? 0) > 0 || (reply.progress ?? 0) > 0));
        if (!started) return { state: 'QUEUED', queuePosition: reply.queue_position ?? null };
        const totalSteps = reply.total_steps || job.params.numInferenceSteps;
        const step = reply.step ?? Math.round((reply.progress ?? 0) * totalSteps);
        return { state: 'PROCESSING', step: Math.min(step, totalSteps), totalSteps };
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
