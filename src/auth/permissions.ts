import { forbidden } from '../errors.js';
import { hasScope, type KeyScope, type Principal } from './api-key.js';

/**
 * What each operation needs, for every transport (GraphQL, REST): the one place scope rules are
 * written. Scopes are ranked (read < generate < admin), so a key with a higher one may too.
 */
export const PERMISSIONS = {
  'jobs.read': 'read',
  'jobs.create': 'generate',
  'jobs.cancel': 'generate',
  'models.read': 'read',
  'embeddings.upload': 'admin',
  'webhooks.secret': 'generate',
} as const satisfies Record<string, KeyScope>;

export type Operation = keyof typeof PERMISSIONS;

/** The principal, if its key may do this; FORBIDDEN (naming the scope it lacks) otherwise. */
export function authorize(principal: Principal, operation: Operation): Principal {
  const scope = PERMISSIONS[operation];
  if (!hasScope(principal, scope)) throw forbidden(scope);
  return principal;
}
