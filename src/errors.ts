/**
 * Errors the API reports to callers on purpose, each with a stable code. Anything else thrown
 * is an internal fault: logged in full, shown to the caller only as a generic message.
 */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly httpStatus: number,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const unauthenticated = (message: string) => new ApiError('UNAUTHENTICATED', message, 401);
export const forbidden = (scope: string) =>
  new ApiError('FORBIDDEN', `this API key lacks the "${scope}" scope needed here`, 403, { requiredScope: scope });
export const notFound = (what: string, id: string) => new ApiError('NOT_FOUND', `${what} "${id}" was not found`, 404);
