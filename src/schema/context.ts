import type { Principal } from '../auth/api-key.js';
import { unauthenticated } from '../errors.js';
import type { JobService } from '../jobs/job-service.js';
import type { CatalogueService } from '../models/catalogue-service.js';

/** What every resolver gets: who is calling, the domain services, and how to build absolute URLs. */
export interface GraphQLContext {
  principal: Principal | null;
  /** Set when a key was sent but is not valid, to tell "wrong key" from "no key". */
  authProblem: string | null;
  jobs: JobService;
  models: CatalogueService;
  /** Base of absolute image URLs, e.g. http://host:4000 */
  publicBaseUrl: string;
}

/** The caller's principal; the auth plugin has already refused operations without one. */
export function requirePrincipal(ctx: GraphQLContext) {
  if (!ctx.principal) throw unauthenticated(ctx.authProblem ?? 'an API key is required');
  return ctx.principal;
}
