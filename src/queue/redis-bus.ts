import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { connectRedis } from './redis-connection.js';

type Handler = (message: string) => void;

/**
 * This process's Redis pub/sub: one connection that publishes (and runs the few plain commands
 * the queue needs), one that subscribes, with the handlers of each channel fanned out here.
 * Channels are named under the prefix, so test runs and deployments sharing a Redis stay apart.
 *
 * Pub/sub delivers at most once: what is published while a subscriber is away is lost to it.
 * So after every (re)subscription is acknowledged, the resubscribed listeners run: they re-read
 * what they follow from the store, which is never behind a published event (persist, then
 * publish).
 */
export class RedisBus {
  /** Publishes, and runs plain commands (LPOS, LLEN). */
  readonly commands: Redis;
  private readonly sub: Redis;
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly resubscribed: ((channels: string[]) => void)[] = [];
  /** Set after the first 'ready': later ones are reconnections. */
  private wasReady = false;
  private closed = false;

  constructor(
    url: string,
    readonly prefix: string,
    private readonly logger: Logger,
    name = 'sd15',
  ) {
    this.commands = connectRedis(url, 'wait', `${name}:pub`, logger);
    // Resubscribes itself (below), so that it knows when the subscriptions hold again.
    this.sub = connectRedis(url, 'wait', `${name}:sub`, logger, { autoResubscribe: false });
    this.sub.on('message', (channel: string, message: string) => {
      const set = this.handlers.get(channel);
      if (!set) return;
      for (const handler of [...set]) {
        try {
          handler(message);
        } catch (err) {
          this.logger.error({ err, channel }, 'a pub/sub handler failed');
        }
      }
    });
    this.sub.on('ready', () => {
      if (!this.wasReady) {
        this.wasReady = true;
        return;
      }
      void this.resubscribe();
    });
  }

  /** The full name of one of this server's channels. */
  channel(name: string): string {
    return `${this.prefix}:${name}`;
  }

  /** Resolves once Redis took it (or rejects); callers that must not wait catch it. */
  async publish(name: string, message: string): Promise<void> {
    await this.commands.publish(this.channel(name), message);
  }

  /** Resolves once Redis acknowledged the subscription (at once if the channel already was). */
  async subscribe(name: string, handler: Handler): Promise<void> {
    const channel = this.channel(name);
    const set = this.handlers.get(channel);
    if (set) {
      set.add(handler);
      return;
    }
    this.handlers.set(channel, new Set([handler]));
    await this.sub.subscribe(channel);
  }

  unsubscribe(name: string, handler: Handler): void {
    const channel = this.channel(name);
    const set = this.handlers.get(channel);
    if (!set?.delete(handler) || set.size > 0) return;
    this.handlers.delete(channel);
    if (this.closed) return;
    // Commands on one connection run in order, so a later subscribe of the channel wins.
    this.sub.unsubscribe(channel).catch((err: unknown) => this.logger.debug({ err, channel }, 'unsubscribe failed'));
  }

  /**
   * Called after a reconnection, once the subscriptions are back, with the channels (short
   * names) that were resubscribed.
   */
  onResubscribed(listener: (channels: string[]) => void): void {
    this.resubscribed.push(listener);
  }

  /**
   * Readiness: resolves once Redis answers a PING on the command connection, with the
   * subscriber connection up too (events from workers arrive on it). Rejects at once, with the
   * code "not connected", while either is reconnecting: a probe never queues a command to wait
   * for Redis. The caller bounds the wait for the answer (createReadiness's timeout).
   */
  async ping(): Promise<void> {
    for (const client of [this.commands, this.sub]) {
      if (client.status !== 'ready') throw Object.assign(new Error(`redis connection ${client.status}`), { code: 'not connected' });
    }
    await this.commands.ping();
  }

  /** Channels with at least one handler (full names): for tests and leak checks. */
  subscribedChannels(): string[] {
    return [...this.handlers.keys()];
  }

  async close(): Promise<void> {
    this.closed = true;
    this.handlers.clear();
    await Promise.all([quit(this.commands), quit(this.sub)]);
  }

  private async resubscribe(): Promise<void> {
    const channels = [...this.handlers.keys()];
    try {
      if (channels.length > 0) await this.sub.subscribe(...channels);
    } catch (err) {
      // The connection dropped again; its next 'ready' tries again.
      this.logger.warn({ err }, 'could not resubscribe after reconnecting');
      return;
    }
    const short = channels.map((c) => c.slice(this.prefix.length + 1));
    for (const listener of this.resubscribed) listener(short);
  }
}

/** QUIT when connected (pending replies arrive first); otherwise just drop the connection. */
async function quit(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    await client.quit().catch(() => client.disconnect());
  } else {
    client.disconnect();
  }
}
