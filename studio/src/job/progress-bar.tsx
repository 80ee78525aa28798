import { formatRemaining } from './step-timer';

/** Denoising progress: step / total, and the time left once the pace is known. */
export function ProgressBar({ step, totalSteps, remainingMs }: { step: number; totalSteps: number; remainingMs: number | null }) {
  const percent = totalSteps > 0 ? Math.round((step / totalSteps) * 100) : 0;
  const eta = remainingMs === null ? null : formatRemaining(remainingMs);
  const text = `Step ${step} of ${totalSteps}${eta ? `, ${eta}` : ''}`;
  return (
    <div class="progress">
      <div
        class="progress-track"
        role="progressbar"
        aria-label="Progress"
        aria-valuemin={0}
        aria-valuemax={totalSteps}
        aria-valuenow={step}
        aria-valuetext={text}
      >
        <div class="progress-fill" style={{ width: `${percent}%` }} />
      </div>
      <p class="progress-text">
        <span>
          Step {step} / {totalSteps}
        </span>
        {eta && <span class="muted">{eta}</span>}
      </p>
    </div>
  );
}
