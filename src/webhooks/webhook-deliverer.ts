import { randomUUID } from 'node:crypto';
import { jobLogger, type Logger } from '../logger.js';
import type { Job } from '../jobs/job.js';
import { webhookBody } from './webhook-payload.js';
import type { SendOutcome } from './webhook-sender.js';
import type { WebhookDelivery, WebhookStore } from './webhook-store.js';
import { backoffDelay } from '../retry/backoff.js';
import { TaskSlots } from '../concurrency/task-slots.js';

export interface WebhookOptions {
  /** Attempts per delivery before it is given up. */
  maxAttempts: number;
  /** Wait before the first retry; doubles each time (with jitter), capped at 10 minutes. */
  retryBaseMs: number;
  /** Deliveries in flight at once. */
  concurrency: number;
}

const MAX_RETRY_DELAY_MS = 10 * 60_000;
/** Shortest sleep between looks at the queue, so deliveries in flight do not make it spin. */
const MIN_TICK_MS = 50;
/** How soon to look again when the store could not be read. */
const STORE_RETRY_MS = 1_000;

/**
 * Sends a webhook for every job that asked for one when it reaches a terminal state. The
 * delivery is persisted first and retried with exponential back-off until delivered, refused
 * for good, or out of attempts; the same delivery id goes with every attempt.
 */
export class WebhookDeliverer {
  /** Deliveries being attempted now, by id (a slot each). */
  private readonly inFlight = new Set<string>();
  private readonly slots: TaskSlots;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** The look at the store in progress, and whether another was asked for meanwhile. */
  private pumping: Promise<void> | null = null;
  private pumpAgain = false;

  constructor(
    private readonly deps: {
      store: WebhookStore;
      send: (url: string, deliveryId: string, body: string, ownerId: string) => Promise<SendOutcome>;
      getJob: (id: string) => Promise<Job | null>;
      publicBaseUrl: () => string;
      logger: Logger;
      clock?: () => number;
    },
    private readonly options: WebhookOptions,
  ) {
    this.slots = new TaskSlots(options.concurrency, (err) => deps.logger.error({ err }, 'webhook delivery failed'));
  }

  private now(): number {
    return (this.deps.clock ?? Date.now)();
  }

  /** Starts sending; first queues deliveries for jobs that finished while the process died. */
  async start(): Promise<void> {
    this.running = true;
    for (const id of await this.deps.store.jobsMissingDelivery()) {
      const job = await this.deps.getJob(id);
      if (job) await this.jobFinished(job);
    }
    this.pump();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.pumping;
    await this.slots.idle();
  }

  /** Records the delivery for a job that just finished (no-op without a webhook URL). */
  async jobFinished(job: Job): Promise<void> {
    if (!job.webhookUrl) return;
    const id = randomUUID();
    await this.deps.store.add({
      id,
      jobId: job.id,
      ownerId: job.ownerId,
      url: job.webhookUrl,
      body: webhookBody(id, job, this.deps.publicBaseUrl()),
      nextAttemptAt: this.now(),
    });
    this.pump();
  }

  /** Starts what is due and sets the timer for the next; one look at the store at a time. */
  private pump(): void {
    if (!this.running) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.look()
      .catch((err: unknown) => {
        // The store cannot answer (its database is unreachable): look again in a while.
        this.deps.logger.warn({ err }, 'could not read the webhook deliveries; will look again');
        this.setTimer(this.now() + STORE_RETRY_MS);
      })
      .finally(() => {
        this.pumping = null;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.pump();
        }
      });
  }

  private async look(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const free = this.slots.free;
    if (free > 0) {
      // Only as many as there are free slots: a shared store claims what it returns.
      const due = await this.deps.store.due(this.now(), free, this.inFlight);
      if (!this.running) return;
      for (const delivery of due) {
        this.inFlight.add(delivery.id);
        this.slots.run(
          () =>
            this.attempt(delivery).catch((err: unknown) =>
              jobLogger(this.deps.logger, delivery.jobId).error({ err, deliveryId: delivery.id }, 'webhook delivery failed'),
            ),
          () => {
            this.inFlight.delete(delivery.id);
            this.pump();
          },
        );
      }
    }
    const next = await this.deps.store.nextDueAt();
    if (next !== null) this.setTimer(next);
  }

  private setTimer(at: number): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.pump(), Math.max(MIN_TICK_MS, at - this.now()));
    this.timer.unref();
  }

  private async attempt(d: WebhookDelivery): Promise<void> {
    const outcome = await this.deps.send(d.url, d.id, d.body, d.ownerId);
    const attempts = d.attempts + 1;
    const log = jobLogger(this.deps.logger, d.jobId).child({ deliveryId: d.id, attempts });
    if (outcome.ok) {
      await this.deps.store.delivered(d, attempts);
      log.debug('webhook delivered');
      return;
    }
    if (!outcome.retry || attempts >= this.options.maxAttempts) {
      log.warn({ error: outcome.error }, 'webhook given up');
      await this.deps.store.gaveUp(d, attempts, outcome.error);
      return;
    }
    // Full jitter on an exponential back-off keeps many failing receivers from retrying in step.
    const delay = backoffDelay(attempts - 1, { baseMs: this.options.retryBaseMs, maxMs: MAX_RETRY_DELAY_MS, jitter: 'equal' });
    log.info({ error: outcome.error, retryInMs: Math.round(delay) }, 'webhook will be retried');
    await this.deps.store.retryLater(d, attempts, this.now() + delay, outcome.error);
  }
}
