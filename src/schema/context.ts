import { hasScope, type KeyScope, type Principal } from '../auth/api-key.js';
import { forbidden, unauthenticated } from '../errors.js';
import type { JobService } from '../jobs/job-service.js';
import type { CatalogueService } from '../engines/catalogue-service.js';

/** What every resolver gets: who is calling, the domain services, and how to build absolute URLs. */
export interface GraphQLContext {
  principal: Principal | null;
  /** Set when a key was sent but is not valid, to tell "wrong key" from "no key". */
  authProblem: string | null;
  jobs: JobService;
  models: CatalogueService;
  /** Base of absolute image URLs, e.g. http://host:4000 */
  publicBaseUrl: string;
  /** The webhook signing secret of a key (made on first use). */
  webhookSecretOf: (keyId: string) => string | null;
  /** The Idempotency-Key header of an HTTP request (WebSocket operations use the input field). */
  idempotencyKey: string | null;
}

/**
 * The caller's principal, if its key has the scope (the auth plugin has already refused
 * operations without a key): read for looking, generate for creating and canceling jobs,
 * admin for changing the catalogue.
 */
export function requireScope(ctx: GraphQLContext, scope: KeyScope): Principal {
  if (!ctx.principal) throw unauthenticated(ctx.authProblem ?? 'an API key is required');
  if (!hasScope(ctx.principal, scope)) throw forbidden(scope);
  return ctx.principal;
}
