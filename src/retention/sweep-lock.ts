/**
 * Who may run a periodic task (the retention sweep) now, when several processes could.
 *
 * tryAcquire() answers at once: a lease if no one else holds the name, null if someone does
 * (they are doing the work; skip this round). One implementation exists: InProcessLock, enough
 * for SQLite, whose database one server process owns. With a shared database the same
 * interface takes a Postgres session advisory lock (pg_try_advisory_lock(hashtext(name)) on a
 * client kept out of the pool until release, pg_advisory_unlock on release), or a Redis lock
 * (SET name token NX PX ttl, renewed while held, deleted by a compare-and-delete script), whose
 * lease reports `lost` once the TTL ran out without renewal so the holder stops between batches.
 */
export interface SweepLock {
  tryAcquire(name: string): Promise<Lease | null>;
}

export interface Lease {
  /** True once the lock may be held by someone else (a lapsed TTL, a dropped connection): stop. */
  readonly lost: boolean;
  release(): Promise<void>;
}

/** Holds names within this process: one sweep at a time, however it was started. */
export class InProcessLock implements SweepLock {
  private readonly held = new Set<string>();

  async tryAcquire(name: string): Promise<Lease | null> {
    if (this.held.has(name)) return null;
    this.held.add(name);
    let released = false;
    return {
      lost: false,
      release: async () => {
        if (released) return;
        released = true;
        this.held.delete(name);
      },
    };
  }
}
