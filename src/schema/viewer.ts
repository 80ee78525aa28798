import type { KeyScope, Principal } from '../auth/api-key.js';
import { unauthenticated } from '../errors.js';
import { builder } from './builder.js';

const KeyScopeEnum = builder.enumType('KeyScope', {
  description: 'What a key may do. Ranked: each includes the ones before it in read < generate < admin.',
  values: {
    READ: { value: 'read', description: 'See its own jobs and the model catalogue; follow its jobs.' },
    GENERATE: { value: 'generate', description: 'Also create and cancel jobs.' },
    ADMIN: { value: 'admin', description: 'Also add embeddings to the catalogue.' },
  } as const satisfies Record<Uppercase<KeyScope>, { value: KeyScope; description: string }>,
});

const ApiKey = builder.objectRef<Principal>('ApiKey').implement({
  description: 'An API key as the server knows it: its record, never the key itself.',
  fields: (t) => ({
    id: t.exposeID('keyId', { description: "The key's id (what the keys command lists)." }),
    name: t.exposeString('name', { description: 'The name given when the key was created.' }),
    scopes: t.field({ type: [KeyScopeEnum], description: 'What the key may do.', resolve: (p) => p.scopes }),
  }),
});

builder.queryFields((t) => ({
  viewer: t.field({
    type: ApiKey,
    description: 'The API key making this request: its name and scopes (so a client can show who it is and what it may do).',
    resolve: (_, __, ctx) => {
      if (!ctx.principal) throw ctx.authUnavailable ?? unauthenticated(ctx.authProblem ?? 'an API key is required');
      return ctx.principal;
    },
  }),
}));
