/**
 * Where a caller's API key travels: the `API-Key` header (the contract), `Authorization: Bearer`,
 * or, over WebSocket, the connection_init payload as `apiKey` or `API-Key`.
 */

type HeaderGetter = { get(name: string): string | null };

export function apiKeyFromHeaders(headers: HeaderGetter): string | null {
  const direct = headers.get('api-key')?.trim();
  if (direct) return direct;
  const auth = headers.get('authorization')?.trim();
  const match = auth ? /^Bearer\s+(\S+)$/i.exec(auth) : null;
  return match?.[1] ?? null;
}

export function apiKeyFromConnectionParams(params: Readonly<Record<string, unknown>> | undefined): string | null {
  if (!params) return null;
  for (const name of ['apiKey', 'API-Key', 'api-key', 'apikey']) {
    const value = params[name];
    if (typeof value === 'string' && value.trim()) return value.trim();
  }
  // Some clients nest headers, as Apollo's did: { headers: { 'API-Key': ... } }.
  const headers = params.headers;
  if (headers && typeof headers === 'object') {
    return apiKeyFromConnectionParams(headers as Record<string, unknown>);
  }
  return null;
}
