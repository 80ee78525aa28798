import { createHmac } from 'node:crypto';
import type { Job } from '../jobs/job.js';

/**
 * What a webhook receiver gets, and how it can tell the sender was us. Pure functions.
 *
 * Body (JSON): { delivery_id, event: "job.succeeded" | "job.failed" | "job.canceled",
 *   job: { id, mode, status, download_urls, nsfw, seed, error, created_at, finished_at } }
 * Headers: X-Webhook-Id (the delivery id, the same on every retry: deduplicate on it),
 *   X-Webhook-Timestamp (unix seconds of this attempt), X-Webhook-Signature:
 *   "sha256=" + hex HMAC-SHA256 of the raw body with the API key's webhook secret.
 */

export function webhookEvent(job: Job): string {
  return `job.${job.status === 'SUCCESS' ? 'succeeded' : job.status === 'FAILURE' ? 'failed' : 'canceled'}`;
}

export function webhookBody(deliveryId: string, job: Job, publicBaseUrl: string): string {
  return JSON.stringify({
    delivery_id: deliveryId,
    event: webhookEvent(job),
    job: {
      id: job.id,
      mode: job.mode,
      status: job.status,
      // This server's URLs even with IMAGE_URLS=presigned: a delivery is stored and retried for
      // hours, longer than a presigned URL lives, and any replica serves these from the store.
      download_urls: job.images.map((i) => `${publicBaseUrl}/images/${i.name}`),
      nsfw: job.images.map((i) => i.nsfw),
      seed: job.params.seed,
      error: job.error,
      created_at: job.createdAt.toISOString(),
      finished_at: job.finishedAt?.toISOString() ?? null,
    },
  });
}

export function signWebhookBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}
