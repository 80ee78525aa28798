import { createHash, randomBytes, randomUUID } from 'node:crypto';

/**
 * API keys: 32 random bytes, shown once, stored only as a SHA-256 hash. A fast hash is right
 * here (unlike for passwords): the key's entropy, not the hash's cost, is what resists guessing.
 */

export const KEY_SCOPES = ['generate', 'read', 'admin'] as const;
export type KeyScope = (typeof KEY_SCOPES)[number];

/**
 * Scopes are ranked, each including the ones below: read (see own jobs, models, subscribe),
 * generate (also create and cancel jobs), admin (also add embeddings to the catalogue).
 */
const SCOPE_RANK: Record<KeyScope, number> = { read: 0, generate: 1, admin: 2 };

export function hasScope(principal: Principal, needed: KeyScope): boolean {
  return principal.scopes.some((s) => SCOPE_RANK[s] >= SCOPE_RANK[needed]);
}

/** Reads a comma-separated scope list as operators type it ("read-only" is read). */
export function parseScopes(text: string): { scopes: KeyScope[]; unknown: string[] } {
  const names = text
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  const mapped = names.map((n) => (n === 'read-only' || n === 'readonly' ? 'read' : n));
  const scopes = [...new Set(mapped.filter((n): n is KeyScope => (KEY_SCOPES as readonly string[]).includes(n)))];
  return { scopes, unknown: names.filter((_, i) => !(KEY_SCOPES as readonly string[]).includes(mapped[i]!)) };
}

/** Who is calling: the key's record, never the key itself. */
export interface Principal {
  keyId: string;
  name: string;
  scopes: KeyScope[];
}

/** How every key begins (and so its shown prefix). */
export const API_KEY_PREFIX = 'sdk_';
/** Characters in a whole key: the prefix and 32 bytes in unpadded base64url. */
export const API_KEY_LENGTH = API_KEY_PREFIX.length + 43;

export function generateApiKey(): { id: string; key: string; hash: string; prefix: string } {
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { id: randomUUID(), key, hash: hashApiKey(key), prefix: key.slice(0, API_KEY_PREFIX.length + 6) };
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}
