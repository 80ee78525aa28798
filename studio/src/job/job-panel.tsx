import type { JobStatus } from '../../../src/client/generated/graphql';
import type { JobWithSettings } from '../api/jobs-api';
import { MODES } from '../form/form-values';
import { ProgressBar } from './progress-bar';
import type { CurrentJob } from './use-current-job';

export const STATUS_LABELS: Record<JobStatus, string> = {
  PENDING: 'Queued',
  PROCESSING: 'Generating',
  SUCCESS: 'Done',
  FAILURE: 'Failed',
  CANCELED: 'Canceled',
};

/** What the person can do about a failure, by its code (the request's fault, or the server's). */
const FAILURE_ADVICE: Record<string, string> = {
  INVALID_INPUT: 'Change the request and generate again.',
  IMAGE_UNAVAILABLE: 'The server could not fetch an image: use a file, or a URL it can reach.',
  ENGINE_UNREACHABLE: 'The engine could not be reached; try again later.',
};
const DEFAULT_ADVICE = 'The server or its engine failed; trying again may work. If it keeps failing, tell the operator.';

export const modeLabel = (mode: JobWithSettings['mode']) => MODES.find((m) => m.value === mode.toLowerCase())?.label ?? mode;

/** The job just made: queue position, progress with the time left, the live preview, then the images. */
export function JobPanel({
  current,
  onCancel,
  onUseSeed,
}: {
  current: CurrentJob;
  onCancel: () => void;
  onUseSeed: (seed: number) => void;
}) {
  const { job } = current;
  return (
    <section class="card job-panel" aria-labelledby="job-heading">
      <h2 id="job-heading">Result</h2>
      {job ? (
        <JobView current={current} job={job} onCancel={onCancel} onUseSeed={onUseSeed} />
      ) : (
        <p class="empty">The images you generate appear here, with a live preview while they form.</p>
      )}
    </section>
  );
}

function JobView({
  current,
  job,
  onCancel,
  onUseSeed,
}: {
  current: CurrentJob;
  job: JobWithSettings;
  onCancel: () => void;
  onUseSeed: (seed: number) => void;
}) {
  const { width, height } = job.parameters;
  const running = job.status === 'PENDING' || job.status === 'PROCESSING';
  return (
    <div class="job-view">
      <div class="job-head">
        <span class={`status status-${job.status.toLowerCase()}`} aria-live="polite">
          {STATUS_LABELS[job.status]}
        </span>
        <span class="muted">
          Job <code title={job.id}>{job.id.slice(0, 8)}</code> · {modeLabel(job.mode)} · {width}×{height} · seed {job.seed}
        </span>
      </div>

      {job.status === 'PENDING' && <p class="queue">{queueText(job.queuePosition)}</p>}
      {running && <ProgressBar step={job.progress.step} totalSteps={job.progress.totalSteps} remainingMs={current.remainingMs} />}
      {job.status === 'PROCESSING' && (
        <div class="preview-frame" style={{ aspectRatio: `${width} / ${height}`, maxWidth: `${Math.max(width, 256)}px` }}>
          {current.preview ? (
            <img src={current.preview} alt={`Preview of job ${job.id}`} />
          ) : (
            <span class="muted">The preview appears as the image forms.</span>
          )}
        </div>
      )}
      {running && (
        <div class="actions">
          <button type="button" class="button" onClick={onCancel} disabled={current.canceling}>
            Cancel
          </button>
          {current.connection === 'reconnecting' && !current.followError && <span class="hint">Connection lost; reconnecting…</span>}
        </div>
      )}

      {job.status === 'FAILURE' && job.error && (
        <div class="error-box" role="alert">
          <p>
            <strong>{job.error.code}</strong>: {job.error.message}
          </p>
          <p class="hint">{FAILURE_ADVICE[job.error.code] ?? DEFAULT_ADVICE}</p>
        </div>
      )}
      {job.status === 'CANCELED' && <p>This job was canceled before it finished.</p>}
      {job.status === 'SUCCESS' && (
        <>
          <div class="results">
            {job.images.map((image, i) => (
              <figure key={image.url}>
                <img src={image.url} alt={`Result ${i + 1} of job ${job.id}`} width={width} height={height} />
                <figcaption>
                  <a href={image.url} download={`job-${job.id.slice(0, 8)}-${i + 1}.${image.contentType.split('/')[1] ?? 'png'}`}>
                    Download image {i + 1}
                  </a>
                  {image.nsfw && <span class="muted"> · blacked out by the safety checker</span>}
                </figcaption>
              </figure>
            ))}
          </div>
          <button type="button" class="button subtle" onClick={() => onUseSeed(job.seed)}>
            Use seed {job.seed} again
          </button>
        </>
      )}
      {current.followError && <p class="error">{current.followError.message}</p>}
      {current.cancelError && <p class="error">Not canceled: {current.cancelError.message}</p>}
    </div>
  );
}

function queueText(position: number | null): string {
  if (position === null) return 'Waiting for the engine…';
  if (position === 0) return 'In the queue: next to start.';
  return `In the queue: ${position} ${position === 1 ? 'job' : 'jobs'} ahead.`;
}
