/**
 * A fixed number of slots for background tasks: the loops that hand jobs to the engine, poll
 * it and deliver webhooks each run at most `limit` tasks at once, and on stop wait for the
 * ones running. A task that throws is reported to onError and frees its slot like any other.
 */
export class TaskSlots {
  private busy = 0;
  private readonly waiting = new Set<() => void>();

  constructor(
    readonly limit: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Slots free now. */
  get free(): number {
    return this.limit - this.busy;
  }

  /** Tasks running now. */
  get running(): number {
    return this.busy;
  }

  /**
   * Runs the task in a free slot (callers check `free` first). `settled` runs once it has ended
   * and its slot is free again, so a loop can start the next one from there.
   */
  run(task: () => Promise<void>, settled: () => void): void {
    if (this.busy >= this.limit) throw new Error('no free slot');
    this.busy++;
    void task()
      .catch(this.onError)
      .finally(() => {
        this.busy--;
        if (this.busy === 0) {
          for (const resolve of this.waiting) resolve();
          this.waiting.clear();
        }
        settled();
      });
  }

  /** Resolves once no task is running. */
  idle(): Promise<void> {
    if (this.busy === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiting.add(resolve));
  }
}
