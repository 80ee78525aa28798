import type { Logger } from 'pino';
import type { EngineStatus } from '../engines/engine.js';
import type { ImageStore } from '../images/image-store.js';
import { isTerminal, type Job, type JobImage, type JobPatch } from './job.js';
import { JobErrorCode } from '../generation/request.js';
import type { JobEvents } from './job-events.js';
import type { JobStore } from './job-store.js';
import { cleanErrorMessage, errorReason, failurePatch, patchFromEngineStatus, requeuePatch, successPatch } from './job-transitions.js';

/**
 * The one place where job state changes: persist first, then publish, so a subscriber never
 * sees a state the store could lose. Results are written to the image store before the job is
 * marked SUCCESS, so SUCCESS always means every image is stored (on disk, or in the bucket).
 */
export class JobUpdater {
  private readonly finishedListeners: ((job: Job) => void)[] = [];

  constructor(
    private readonly store: JobStore,
    private readonly events: JobEvents,
    private readonly images: ImageStore,
    private readonly logger: Logger,
    /** Secrets that must never reach a stored error message (upstream API keys). */
    private readonly secrets: readonly string[] = [],
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Applies an engine report; returns the job as it now stands. */
  async applyEngineStatus(job: Job, status: EngineStatus): Promise<Job> {
    if (status.state !== 'SUCCESS') {
      const patch = patchFromEngineStatus(job, status, this.now());
      const preview = status.state === 'PROCESSING' ? status.preview : undefined;
      if (patch) return this.patch(job, patch, preview);
      // A preview alone changes nothing stored: it is published with the job as it stands.
      if (preview && job.progress) this.events.publish(withPreview(job, preview));
      return job;
    }
    const stored: JobImage[] = [];
    try {
      for (const image of status.images) {
        const { name, contentType } = await this.images.put(image.data, image.contentType);
        stored.push({ name, contentType, nsfw: image.nsfw });
      }
    } catch (err) {
      this.logger.error({ err, jobId: job.id }, 'could not store result images');
      // The samples stored before the failure belong to no job: best effort, the retention sweep takes what is left.
      await Promise.allSettled(stored.map((i) => this.images.delete(i.name)));
      return this.fail(job, JobErrorCode.IMAGE_STORE_FAILED, `the results could not be written to the image store: ${errorReason(err)}`);
    }
    if (stored.length === 0) {
      return this.fail(job, JobErrorCode.ENGINE_BAD_REPLY, 'the engine reported success without any image');
    }
    return this.patch(job, successPatch(job, stored, this.now()));
  }

  /** Called once for each job that reaches a terminal state through this updater. */
  onFinished(listener: (job: Job) => void): void {
    this.finishedListeners.push(listener);
  }

  /** Takes a job back from a worker that lost it, to be submitted again. */
  requeue(job: Job): Promise<Job> {
    return this.patch(job, requeuePatch(job));
  }

  setEngineHandle(job: Job, handle: string): Promise<Job> {
    return this.patch(job, { engineHandle: handle });
  }

  fail(job: Job, code: string, message: string): Promise<Job> {
    return this.patch(job, failurePatch(job, code, message, this.now()));
  }

  cancel(job: Job): Promise<Job> {
    return this.patch(job, { status: 'CANCELED', finishedAt: this.now(), engineQueuePosition: null });
  }

  private async patch(job: Job, patch: JobPatch, preview?: string): Promise<Job> {
    if (patch.error) patch = { ...patch, error: { ...patch.error, message: cleanErrorMessage(patch.error.message, this.secrets) } };
    const updated = await this.store.update(job.id, patch);
    if (!updated) {
      // Someone else ended the job first (a cancel, usually): theirs stands.
      return (await this.store.get(job.id)) ?? job;
    }
    this.events.publish(preview && updated.progress ? withPreview(updated, preview) : updated);
    if (isTerminal(updated.status)) for (const listener of this.finishedListeners) listener(updated);
    return updated;
  }
}

function withPreview(job: Job, preview: string): Job {
  return { ...job, progress: { ...job.progress!, preview } };
}
