import { builder } from './builder.js';
import { authorized } from './context.js';

builder.queryFields((t) => ({
  webhookSecret: t.string({
    description:
      'This API key\'s webhook signing secret: X-Webhook-Signature is "sha256=" + hex HMAC-SHA256 of the raw request body with it. Rotate it with the keys command (keys webhook-secret ID --rotate).',
    resolve: async (_, __, ctx) => {
      const principal = authorized(ctx, 'webhooks.secret');
      return (await ctx.webhookSecretOf(principal.keyId)) ?? '';
    },
  }),
}));
