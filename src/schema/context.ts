import type { Principal } from '../auth/api-key.js';
import { authorize, type Operation } from '../auth/permissions.js';
import { type ApiError, unauthenticated } from '../errors.js';
import type { JobService } from '../jobs/job-service.js';
import type { CatalogueService } from '../engines/catalogue-service.js';
import type { ImageLinks } from '../images/image-links.js';

/** What every resolver gets: who is calling, the domain services, and how to build absolute URLs. */
export interface GraphQLContext {
  principal: Principal | null;
  /** Set when a key was sent but is not valid, to tell "wrong key" from "no key". */
  authProblem: string | null;
  /** Set when the key could not be checked (its database cannot be reached): STORAGE_UNAVAILABLE. */
  authUnavailable: ApiError | null;
  jobs: JobService;
  models: CatalogueService;
  /** Base of absolute image URLs, e.g. http://host:4000 */
  publicBaseUrl: string;
  /** Download URLs: through publicBaseUrl, or presigned for the bucket (IMAGE_URLS). */
  links: ImageLinks;
  /** The webhook signing secret of a key (made on first use). */
  webhookSecretOf: (keyId: string) => Promise<string | null>;
  /** The Idempotency-Key header of an HTTP request (WebSocket operations use the input field). */
  idempotencyKey: string | null;
}

/**
 * The caller's principal, if its key may do the operation (auth/permissions.ts has the rules;
 * the auth plugin has already refused operations without a key).
 */
export function authorized(ctx: GraphQLContext, operation: Operation): Principal {
  if (!ctx.principal) throw ctx.authUnavailable ?? unauthenticated(ctx.authProblem ?? 'an API key is required');
  return authorize(ctx.principal, operation);
}
