import type { Logger } from 'pino';
import type { KeyStore } from '../auth/key-store.js';
import type { Config } from '../config.js';
import type { JobStore } from '../jobs/job-store.js';
import { parseAllowHosts } from '../net/address-policy.js';
import { checkOutboundUrl, outboundRefusal } from '../net/guarded-agent.js';
import { WebhookDeliverer } from './webhook-deliverer.js';
import { WebhookSender } from './webhook-sender.js';
import type { WebhookStore } from './webhook-store.js';

/** Deliveries in flight at once: receivers are other people's servers, so few. */
const CONCURRENCY = 4;

/** Wires the webhook sender, its stored deliveries and the deliverer that retries them. */
export function createWebhooks(deps: {
  /** The stored deliveries: SqliteWebhookStore, or PgWebhookStore with DATABASE_URL. */
  store: WebhookStore;
  keys: KeyStore;
  jobs: JobStore;
  config: Config['webhooks'];
  publicBaseUrl: () => string;
  logger: Logger;
}) {
  const allow = parseAllowHosts(deps.config.allowHosts);
  const sender = new WebhookSender(allow, deps.config.timeoutMs);
  const deliverer = new WebhookDeliverer(
    {
      store: deps.store,
      send: async (url, deliveryId, body, ownerId) => {
        const secret = await deps.keys.webhookSecret(ownerId);
        if (!secret) return { ok: false, retry: false, error: 'the API key that made the job was revoked' };
        return sender.send(url, deliveryId, body, secret);
      },
      getJob: (id) => deps.jobs.get(id),
      publicBaseUrl: deps.publicBaseUrl,
      logger: deps.logger,
    },
    { maxAttempts: deps.config.maxAttempts, retryBaseMs: deps.config.retryBaseMs, concurrency: CONCURRENCY },
  );
  return {
    deliverer,
    /** Why a webhook URL is refused at request time (scheme, private IP literal); null if not. */
    checkUrl: (url: string) => outboundRefusal(checkOutboundUrl(url, allow)),
    close: () => sender.close(),
  };
}
