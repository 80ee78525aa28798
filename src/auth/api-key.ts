import { createHash, randomBytes, randomUUID } from 'node:crypto';

/**
 * API keys: 32 random bytes, shown once, stored only as a SHA-256 hash. A fast hash is right
 * here (unlike for passwords): the key's entropy, not the hash's cost, is what resists guessing.
 */

export const KEY_SCOPES = ['generate', 'read', 'admin'] as const;
export type KeyScope = (typeof KEY_SCOPES)[number];

/** Who is calling: the key's record, never the key itself. */
export interface Principal {
  keyId: string;
  name: string;
  scopes: KeyScope[];
}

const KEY_PREFIX = 'sdk_';

export function generateApiKey(): { id: string; key: string; hash: string; prefix: string } {
  const key = `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { id: randomUUID(), key, hash: hashApiKey(key), prefix: key.slice(0, KEY_PREFIX.length + 6) };
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}
