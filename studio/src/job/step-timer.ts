/**
 * Time left in a job, from the pace of its steps so far. The pace counts from the first step seen
 * rather than from the start, because the time before the first step is loading and queueing,
 * not denoising.
 */
export class StepTimer {
  private first: { step: number; at: number } | null = null;
  private last: { step: number; at: number } | null = null;

  observe(step: number, at: number = performance.now()): void {
    if (step <= 0) return;
    if (!this.first) this.first = this.last = { step, at };
    else if (step > this.last!.step) this.last = { step, at };
  }

  /** Milliseconds left, once two different steps have been seen; null before. */
  remainingMs(totalSteps: number): number | null {
    const { first, last } = this;
    if (!first || !last || last.step <= first.step) return null;
    const perStep = (last.at - first.at) / (last.step - first.step);
    return Math.max(0, (totalSteps - last.step) * perStep);
  }
}

/** The time left, for people: "about 12 s left", "about 2 min 5 s left". */
export function formatRemaining(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 1) return 'less than a second left';
  if (seconds < 60) return `about ${seconds} s left`;
  const minutes = Math.floor(seconds / 60);
  return `about ${minutes} min${seconds % 60 === 0 ? '' : ` ${seconds % 60} s`} left`;
}
