import { request, type Agent } from 'undici';
import type { AllowList } from '../net/address-policy.js';
import { AddressRefused, checkOutboundUrl, createGuardedAgent, findCause } from '../net/guarded-agent.js';
import { signWebhookBody } from './webhook-payload.js';

/** The outcome of one attempt: delivered, worth retrying, or never going to work. */
export type SendOutcome = { ok: true } | { ok: false; retry: boolean; error: string };

/**
 * POSTs one webhook under the same outbound rules as image fetching (public addresses only,
 * checked after DNS and pinned; an allowlist for operators). Redirects are not followed: a
 * receiver must answer at the URL it gave.
 */
export class WebhookSender {
  private readonly agent: Agent;

  constructor(
    private readonly allow: AllowList,
    private readonly timeoutMs: number,
  ) {
    this.agent = createGuardedAgent(allow, timeoutMs);
  }

  async send(url: string, deliveryId: string, body: string, secret: string): Promise<SendOutcome> {
    const checked = checkOutboundUrl(url, this.allow);
    if (!('url' in checked)) return { ok: false, retry: false, error: `the webhook URL ${checked.refusal}` };
    try {
      const res = await request(checked.url, {
        method: 'POST',
        body,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'sd-api-webhooks/1',
          'x-webhook-id': deliveryId,
          'x-webhook-timestamp': String(Math.floor(Date.now() / 1000)),
          'x-webhook-signature': signWebhookBody(secret, body),
        },
      });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true };
      const retry = res.statusCode === 408 || res.statusCode === 425 || res.statusCode === 429 || res.statusCode >= 500;
      return { ok: false, retry, error: `the receiver answered HTTP ${res.statusCode}` };
    } catch (err) {
      const refused = findCause(err, AddressRefused);
      if (refused) return { ok: false, retry: false, error: `the webhook URL: ${refused.message}` };
      return { ok: false, retry: true, error: `could not reach the receiver: ${(err as Error).message}` };
    }
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
