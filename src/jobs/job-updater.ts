import { jobLogger, type Logger } from '../logger.js';
import type { EngineStatus } from '../engines/engine.js';
import type { ImageStore } from '../images/image-store.js';
import type { ImageLedger } from './image-ledger.js';
import { isTerminal, type Job, type JobImage, type JobPatch } from './job.js';
import { JobErrorCode } from '../generation/request.js';
import type { JobEvents } from './job-events.js';
import type { JobStore } from './job-store.js';
import { StorageUnavailableError } from '../storage/storage-fault.js';
import { cleanErrorMessage, errorReason, failurePatch, patchFromEngineStatus, successPatch } from './job-transitions.js';

/**
 * The one place where job state changes: persist first, then publish, so a subscriber never
 * sees a state the store could lose. Results are written to the image store before the job is
 * marked SUCCESS, so SUCCESS always means every image is stored (on disk, or in the bucket); the
 * ledger notes each image written, so those of a job that never commits them can be found and removed.
 */
export interface JobUpdaterDeps {
  store: JobStore;
  events: JobEvents;
  images: ImageStore;
  logger: Logger;
  /** Where written images are noted before SUCCESS commits; without one, orphans are not tracked. */
  ledger?: ImageLedger;
  /** Secrets that must never reach a stored error message (upstream API keys). */
  secrets?: readonly string[];
  now?: () => Date;
}

export class JobUpdater {
  private readonly finishedListeners: ((job: Job) => void)[] = [];
  private readonly changeListeners: ((before: Job, after: Job) => void)[] = [];
  private readonly store: JobStore;
  private readonly events: JobEvents;
  private readonly images: ImageStore;
  private readonly logger: Logger;
  private readonly ledger: ImageLedger | undefined;
  private readonly secrets: readonly string[];
  private readonly now: () => Date;

  constructor(deps: JobUpdaterDeps) {
    this.store = deps.store;
    this.events = deps.events;
    this.images = deps.images;
    this.logger = deps.logger;
    this.ledger = deps.ledger;
    this.secrets = deps.secrets ?? [];
    this.now = deps.now ?? (() => new Date());
  }

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
    let storeError: unknown = null;
    try {
      for (const image of status.images) {
        const { name, contentType } = await this.images.put(image.data, image.contentType);
        stored.push({ name, contentType, nsfw: image.nsfw });
      }
    } catch (err) {
      storeError = err;
    }
    // Noted before SUCCESS commits (and when some were written before a failure): whatever
    // happens next, the sweep can tell these from the images a finished job references.
    if (this.ledger && stored.length > 0) {
      try {
        await this.ledger.record(
          job.id,
          stored.map((i) => i.name),
        );
      } catch (err) {
        if (err instanceof StorageUnavailableError) {
          // The database cannot be reached: SUCCESS could not commit either, and the engine is
          // asked again later, which writes the images again. These are noted nowhere, so no
          // sweep would ever find them: removed now, and the caller tries again later.
          await Promise.allSettled(stored.map((i) => this.images.delete(i.name)));
          throw err;
        }
        jobLogger(this.logger, job.id).warn(
          { err },
          'could not note the written images; if the job does not commit them, they stay behind',
        );
      }
    }
    if (storeError) {
      jobLogger(this.logger, job.id).error({ err: storeError }, 'could not store result images');
      // The samples stored before the failure belong to no job: best effort now, the retention sweep takes what is left.
      await Promise.allSettled(stored.map((i) => this.images.delete(i.name)));
      return this.fail(
        job,
        JobErrorCode.IMAGE_STORE_FAILED,
        `the results could not be written to the image store: ${errorReason(storeError)}`,
      );
    }
    if (stored.length === 0) {
      return this.fail(job, JobErrorCode.ENGINE_BAD_REPLY, 'the engine reported success without any image');
    }
    return this.patch(job, successPatch(job, stored, this.now(), status.startedAt));
  }

  /** Called once for each job that reaches a terminal state through this updater. */
  onFinished(listener: (job: Job) => void): void {
    this.finishedListeners.push(listener);
  }

  /** Called with the job before and after each change this updater persists (metrics). */
  onChange(listener: (before: Job, after: Job) => void): void {
    this.changeListeners.push(listener);
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
    for (const listener of this.changeListeners) listener(job, updated);
    const log = jobLogger(this.logger, job.id);
    if (job.status !== updated.status) log.debug({ from: job.status, to: updated.status }, 'job changed status');
    if (isTerminal(updated.status)) {
      const runMs = updated.startedAt && updated.finishedAt ? updated.finishedAt.getTime() - updated.startedAt.getTime() : null;
      log.info(
        { mode: updated.mode, status: updated.status, code: updated.error?.code, runMs, images: updated.images.length },
        'job finished',
      );
      for (const listener of this.finishedListeners) listener(updated);
    }
    return updated;
  }
}

function withPreview(job: Job, preview: string): Job {
  return { ...job, progress: { ...job.progress!, preview } };
}
