import { afterEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { RunnerClaim, RunnerTakenError, type ProcessLock } from '../src/runner/runner-claim.js';

/** A lock as the database holds it: one holder per name; a holder's session may be cut. */
class Lock implements ProcessLock {
  holder: { lost: boolean; released: boolean; release(): Promise<void> } | null = null;
  down = false;
  async tryAcquire() {
    if (this.down) throw new Error('unreachable');
    if (this.holder && !this.holder.lost && !this.holder.released) return null;
    const lease = {
      lost: false,
      released: false,
      release: async () => {
        lease.released = true;
      },
    };
    this.holder = lease;
    return lease;
  }
  /** The holder's connection breaks: the database frees the lock with the session. */
  cut() {
    this.holder!.lost = true;
  }
}

const logged: { level: string; msg: string }[] = [];
const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as { level: string; msg: string }) });

afterEach(() => {
  vi.useRealTimers();
  logged.length = 0;
});

describe('RunnerClaim (one process runs jobs in process per shared database)', () => {
  it('refuses a second claimant with the reason, and frees the name on release', async () => {
    const lock = new Lock();
    const first = new RunnerClaim(lock, logger);
    await first.take();
    await expect(new RunnerClaim(lock, logger).take()).rejects.toBeInstanceOf(RunnerTakenError);
    await first.release();
    const second = new RunnerClaim(lock, logger);
    await expect(second.take()).resolves.toBeUndefined();
    await second.release();
  });

  it('takes the claim again once the database answers after a cut; logs an error if another process took it meanwhile', async () => {
    vi.useFakeTimers();
    const lock = new Lock();
    const claim = new RunnerClaim(lock, logger);
    await claim.take();
    const mine = lock.holder;
    lock.cut();
    lock.down = true;
    await vi.advanceTimersByTimeAsync(5_000); // still away: nothing held, nothing logged
    expect(logged).toEqual([]);
    lock.down = false;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(lock.holder).not.toBe(mine);
    expect(lock.holder!.released).toBe(false);
    expect(logged.map((l) => l.msg)).toEqual(['took the runner claim again after the database connection was lost']);

    // Cut again, and another process takes the name first.
    lock.cut();
    const other = new RunnerClaim(lock, logger);
    await other.take();
    await vi.advanceTimersByTimeAsync(5_000);
    await vi.advanceTimersByTimeAsync(5_000);
    const errors = logged.filter((l) => Number(l.level) >= 50);
    expect(errors).toHaveLength(1); // once, not every 5 s
    expect(errors[0]!.msg).toMatch(/another server process already runs jobs/);
    await other.release();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(logged.at(-1)!.msg).toBe('took the runner claim again after the database connection was lost');
    await claim.release();
    expect(lock.holder!.released).toBe(true);
  });
});
