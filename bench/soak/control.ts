import { sleep } from '../lib/load.js';
import type { Ledger } from './ledger.js';

/**
 * When the load stops and how long anything may still wait for a job to end, and the follow-up
 * tasks (subscriptions, cancels, retiring connections) still running, so that the drain can
 * wait for them.
 */
export class LoadControl {
  /** No new work once set; clients finish what they are doing. */
  stopLoad = false;
  /** Epoch ms after which no one waits for a job any longer; Infinity until the load stops. */
  drainDeadline = Infinity;
  readonly followUps = new Set<Promise<void>>();

  constructor(private readonly ledger: Ledger) {}

  follow(p: Promise<void>) {
    const tracked = p.catch((err: unknown) => this.ledger.problem('client bug', String(err))).finally(() => this.followUps.delete(tracked));
    this.followUps.add(tracked);
  }

  /** Sleeps, but not past the end of the load. */
  async pause(ms: number) {
    const until = Date.now() + ms;
    while (!this.stopLoad && Date.now() < until) await sleep(Math.min(250, until - Date.now()));
  }

  /** p's value, or null once the drain deadline has passed. */
  async untilDrainDeadline<T>(p: Promise<T>): Promise<T | null> {
    while (true) {
      const r = await Promise.race([p, sleep(500).then(() => undefined)]);
      if (r !== undefined) return r;
      if (Date.now() > this.drainDeadline) return null;
    }
  }
}
