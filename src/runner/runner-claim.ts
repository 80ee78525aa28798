import type { Logger } from '../logger.js';

/** A name held by one process of all those sharing the store (retention/sweep-lock.ts has them). */
export interface ProcessLock {
  tryAcquire(name: string): Promise<{ readonly lost: boolean; release(): Promise<void> } | null>;
}

const NAME = 'embedded runner';
/** How often a claim lost with its connection (the database restarted) is taken again. */
const RECLAIM_INTERVAL_MS = 5_000;

/** Another process already runs jobs on this database in process. */
export class RunnerTakenError extends Error {
  constructor() {
    super(
      'another server process already runs jobs on this database without REDIS_URL (each would take up the ' +
        "other's unfinished jobs and run them twice): stop it, or set REDIS_URL on every API process and run " +
        'workers (npm run worker)',
    );
    this.name = 'RunnerTakenError';
  }
}

/**
 * Keeps the in-process runner to one process per shared database. Without a queue, a server
 * runs what it accepts and takes up every unfinished job at start, so a second one on the same
 * database would run the first one's jobs again: it is refused at start. The claim is held for
 * the process's life (with Postgres, a session advisory lock); lost with its connection, it is
 * taken again once the database answers, and if another process took it meanwhile, that is
 * logged as the error it is.
 */
export class RunnerClaim {
  private held: { readonly lost: boolean; release(): Promise<void> } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reported = false;

  constructor(
    private readonly lock: ProcessLock,
    private readonly logger: Logger,
  ) {}

  /** Takes the claim, or throws RunnerTakenError. */
  async take(): Promise<void> {
    this.held = await this.lock.tryAcquire(NAME);
    if (!this.held) throw new RunnerTakenError();
    this.timer = setInterval(() => void this.check(), RECLAIM_INTERVAL_MS);
    this.timer.unref();
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const held = this.held;
    this.held = null;
    await held?.release();
  }

  private async check(): Promise<void> {
    if (!this.held?.lost) return;
    await this.held.release();
    let again: Awaited<ReturnType<ProcessLock['tryAcquire']>>;
    try {
      again = await this.lock.tryAcquire(NAME);
    } catch {
      return; // the database is still away: next time
    }
    if (!this.timer) {
      await again?.release(); // released meanwhile
      return;
    }
    this.held = again ?? { lost: true, release: async () => {} };
    if (again) {
      this.reported = false;
      this.logger.info('took the runner claim again after the database connection was lost');
    } else if (!this.reported) {
      this.reported = true;
      this.logger.error(new RunnerTakenError().message);
    }
  }
}
