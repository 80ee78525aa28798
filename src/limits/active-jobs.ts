/** A job as the record of unfinished jobs needs it. */
export interface OwnedJob {
  id: string;
  ownerId: string;
}

/** Where a job stands in the store now: the store is the source of truth for what is unfinished. */
export type StoredState = 'unfinished' | 'finished' | 'missing';

/**
 * The unfinished (waiting or running) jobs of each API key, for the per-key cap and the queue's
 * fairness. Members are job ids, not counts, so a job reported finished twice counts once.
 */
export interface ActiveJobs {
  /**
   * Counts the job among its key's unfinished ones, unless the key has `cap` already (0: no cap).
   * count: the key's unfinished jobs, this one included when admitted.
   */
  reserve(keyId: string, jobId: string, cap: number): Promise<{ admitted: boolean; count: number }>;
  /** The job ended (or was never created): it no longer counts. */
  release(keyId: string, jobId: string): void;
  /** The key's unfinished jobs; null when that cannot be known now. */
  count(keyId: string): Promise<number | null>;
  /**
   * Makes the record agree with the store. active: the store's unfinished jobs, just listed;
   * read: where a job stands now (for those recorded but not listed: created since, or ended).
   */
  reconcile(active: readonly OwnedJob[], read: (jobId: string) => Promise<StoredState>): Promise<void>;
  close?(): Promise<void>;
}

/** In this process's memory: the embedded default, where every job starts and ends here. */
export class InMemoryActiveJobs implements ActiveJobs {
  private readonly byKey = new Map<string, Set<string>>();

  async reserve(keyId: string, jobId: string, cap: number): Promise<{ admitted: boolean; count: number }> {
    const set = this.byKey.get(keyId);
    const count = set?.size ?? 0;
    if (set?.has(jobId)) return { admitted: true, count };
    if (cap > 0 && count >= cap) return { admitted: false, count };
    this.add(keyId, jobId);
    return { admitted: true, count: count + 1 };
  }

  release(keyId: string, jobId: string): void {
    const set = this.byKey.get(keyId);
    if (!set) return;
    set.delete(jobId);
    if (set.size === 0) this.byKey.delete(keyId);
  }

  async count(keyId: string): Promise<number> {
    return this.byKey.get(keyId)?.size ?? 0;
  }

  async reconcile(active: readonly OwnedJob[], read: (jobId: string) => Promise<StoredState>): Promise<void> {
    const listed = new Set(active.map((j) => j.id));
    for (const job of active) this.add(job.ownerId, job.id);
    for (const [keyId, set] of [...this.byKey]) {
      for (const jobId of [...set]) {
        if (!listed.has(jobId) && (await read(jobId)) !== 'unfinished') this.release(keyId, jobId);
      }
    }
  }

  private add(keyId: string, jobId: string): void {
    let set = this.byKey.get(keyId);
    if (!set) this.byKey.set(keyId, (set = new Set()));
    set.add(jobId);
  }
}
