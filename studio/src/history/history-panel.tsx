import type { JobWithSettings } from '../api/jobs-api';
import { SCHEDULERS } from '../form/form-values';
import { modeLabel, STATUS_LABELS } from '../job/job-panel';
import type { JobHistory } from './use-job-history';

const time = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/**
 * The key's jobs with their images and settings, each reusable in the form. The job followed live
 * (`live`) is shown in its latest state rather than as the last page load saw it.
 */
export function HistoryPanel({
  history,
  live,
  onReuse,
}: {
  history: JobHistory;
  live: JobWithSettings | null;
  onReuse: (job: JobWithSettings) => void;
}) {
  return (
    <section class="card history-panel" aria-labelledby="history-heading">
      <div class="section-head">
        <h2 id="history-heading">History</h2>
        <button type="button" class="button subtle" onClick={history.refresh} disabled={history.loading}>
          Refresh
        </button>
      </div>
      {history.error && <p class="error">{history.error.message}</p>}
      {history.jobs.length === 0 && !history.loading && !history.error && <p class="empty">No jobs yet.</p>}
      <ol class="history-list" aria-label="Jobs, newest first">
        {history.jobs.map((job) => (
          <HistoryItem key={job.id} job={live?.id === job.id ? live : job} onReuse={onReuse} />
        ))}
      </ol>
      {history.hasMore && (
        <button type="button" class="button load-more" onClick={history.loadMore} disabled={history.loading}>
          Load more
        </button>
      )}
    </section>
  );
}

function HistoryItem({ job, onReuse }: { job: JobWithSettings; onReuse: (job: JobWithSettings) => void }) {
  const p = job.parameters;
  const settings = [
    modeLabel(job.mode),
    `${p.width}×${p.height}`,
    `${p.numInferenceSteps} steps`,
    `guidance ${p.guidanceScale}`,
    `seed ${p.seed}`,
    p.samples > 1 ? `${p.samples} samples` : '',
    p.strength != null && job.mode !== 'TEXT2IMAGE' ? `strength ${p.strength}` : '',
    p.scheduler ? SCHEDULERS[p.scheduler] : '',
    p.modelId,
  ].filter(Boolean);
  return (
    <li class="history-item" aria-label={`Job ${job.id}`}>
      <div class={job.images.length > 1 ? 'thumbs several' : 'thumbs'} style={{ aspectRatio: `${p.width} / ${p.height}` }}>
        {job.images.length > 0 ? (
          job.images.map((image, i) => (
            <a key={image.url} href={image.url} target="_blank" rel="noopener">
              <img src={image.url} alt={`Image ${i + 1} of job ${job.id}`} loading="lazy" />
            </a>
          ))
        ) : (
          <span class="muted">{STATUS_LABELS[job.status]}</span>
        )}
      </div>
      <div class="history-body">
        <p class="history-prompt">{p.prompt}</p>
        {p.negativePrompt && <p class="muted history-negative">Not: {p.negativePrompt}</p>}
        <p class="history-settings">{settings.join(' · ')}</p>
        <p class="history-meta">
          <span class={`status status-${job.status.toLowerCase()}`}>{STATUS_LABELS[job.status]}</span>{' '}
          <time dateTime={job.createdAt}>{time.format(new Date(job.createdAt))}</time>
        </p>
        {job.error && (
          <p class="error">
            {job.error.code}: {job.error.message}
          </p>
        )}
        <button type="button" class="button subtle" onClick={() => onReuse(job)}>
          Use these settings again
        </button>
      </div>
    </li>
  );
}
