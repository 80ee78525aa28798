import type { EngineStatus } from '../engines/engine.js';
import { type Job, type JobImage, type JobPatch } from './job.js';
import { JobErrorCode } from '../generation/request.js';

/**
 * Pure rules for how an engine's report changes a job. Returns null when nothing changes, so
 * callers neither write nor publish for a poll that saw no news.
 */
export function patchFromEngineStatus(job: Job, status: Exclude<EngineStatus, { state: 'SUCCESS' }>, now: Date): JobPatch | null {
  switch (status.state) {
    case 'QUEUED':
      if (job.status !== 'PENDING' || job.engineQueuePosition === status.queuePosition) return null;
      return { engineQueuePosition: status.queuePosition };
    case 'PROCESSING': {
      const progress = { step: status.step, totalSteps: status.totalSteps };
      if (job.status === 'PENDING') {
        return { status: 'PROCESSING', startedAt: status.startedAt ?? now, progress, engineQueuePosition: null };
      }
      if (job.progress?.step === progress.step && job.progress.totalSteps === progress.totalSteps) return null;
      return { progress };
    }
    case 'FAILURE':
      return failurePatch(job, status.code, status.message, now);
    case 'LOST':
      return failurePatch(job, JobErrorCode.ENGINE_LOST_JOB, status.message, now);
  }
}

export function failurePatch(job: Job, code: string, message: string, now: Date): JobPatch {
  return { status: 'FAILURE', error: { code, message }, finishedAt: now, startedAt: job.startedAt ?? now, engineQueuePosition: null };
}

/** startedAt: the engine's, for a job no poll saw running (it ran between two polls). */
export function successPatch(job: Job, images: JobImage[], now: Date, startedAt?: Date): JobPatch {
  const total = job.progress?.totalSteps ?? job.params.numInferenceSteps;
  return {
    status: 'SUCCESS',
    images,
    progress: { step: total, totalSteps: total },
    startedAt: job.startedAt ?? startedAt ?? now,
    finishedAt: now,
    engineQueuePosition: null,
  };
}

const MAX_ERROR_MESSAGE_CHARS = 1000;
/** Credentials this server issues, wherever they appear: API keys and webhook secrets. */
const ISSUED_SECRET = /\b(?:sdk|whsec)_[A-Za-z0-9_-]{20,}/g;

/**
 * Absolute file paths (Unix, file: URLs, Windows), not URL paths: a client learns nothing from
 * where this server keeps its files, only from the last parts ("…/unet/model.onnx").
 */
const FILE_PATH = /(?<![\w.:/~-])(?:file:\/\/)?(?:\/[^\s/'"`()<>,;:]+){2,}|(?<!\w)[A-Za-z]:\\(?:[^\s\\'"`()<>,;:]+\\)+[^\s\\'"`()<>,;:]+/g;

function shortPath(path: string): string {
  const parts = path
    .replace(/^file:\/\//, '')
    .split(/[\\/]/)
    .filter(Boolean);
  return `…/${parts.slice(-2).join('/')}`;
}

/**
 * What of an error message may be stored and shown to clients: engines and upstreams can say
 * anything, so stack frames are cut, file paths shortened, known secrets (upstream keys) and keys
 * this server issues redacted, and the length capped.
 */
export function cleanErrorMessage(message: string, secrets: readonly string[] = []): string {
  let out = message.split(/\n\s+at\s/)[0]!;
  for (const secret of secrets) if (secret.length >= 8) out = out.split(secret).join('[redacted]');
  out = out.replace(ISSUED_SECRET, '[redacted]').replace(FILE_PATH, shortPath).replace(/\s+/g, ' ').trim();
  return out.length > MAX_ERROR_MESSAGE_CHARS ? `${out.slice(0, MAX_ERROR_MESSAGE_CHARS)}…` : out;
}

/** An unexpected error's own words, for a job's message (cleaned like every other on the way in). */
export function errorReason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
