import { randomBytes } from 'node:crypto';
import type { SqliteDatabase, WalSync } from '../storage/sqlite.js';
import { generateApiKey, hashApiKey, KEY_SCOPES, type KeyScope, type Principal } from './api-key.js';

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  scopes: KeyScope[];
  createdAt: Date;
  revokedAt: Date | null;
}

interface KeyRow {
  id: string;
  name: string;
  key_prefix: string;
  scopes: string;
  created_at: number;
  revoked_at: number | null;
}

const fromRow = (row: KeyRow): ApiKeyRecord => ({
  id: row.id,
  name: row.name,
  prefix: row.key_prefix,
  scopes: JSON.parse(row.scopes) as KeyScope[],
  createdAt: new Date(row.created_at),
  revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
});

/** API keys in SQLite. Lookups hit the database every time so a revocation counts at once. */
export class SqliteKeyStore {
  private readonly byHash;
  private readonly activeById;
  private readonly secretById;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly walSync: WalSync,
  ) {
    this.byHash = db.prepare<[string], KeyRow>('SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL');
    this.secretById = db.prepare<[string], { webhook_secret: string | null }>(
      'SELECT webhook_secret FROM api_keys WHERE id = ? AND revoked_at IS NULL',
    );
    this.activeById = db.prepare<[string], { one: number }>('SELECT 1 AS one FROM api_keys WHERE id = ? AND revoked_at IS NULL');
  }

  /** Creates a key; the plain key is returned here and never again. */
  create(name: string, scopes: readonly KeyScope[] = KEY_SCOPES): { key: string; record: ApiKeyRecord } {
    const trimmed = name.trim();
    if (!trimmed) throw new Error('a key needs a non-empty name');
    const { id, key, hash, prefix } = generateApiKey();
    const createdAt = Date.now();
    this.db
      .prepare(
        'INSERT INTO api_keys (id, name, key_hash, key_prefix, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      )
      .run(id, trimmed, hash, prefix, JSON.stringify(scopes), createdAt);
    this.walSync.syncNow();
    return {
      key,
      record: { id, name: trimmed, prefix, scopes: [...scopes], createdAt: new Date(createdAt), revokedAt: null },
    };
  }

  authenticate(key: string): Principal | null {
    const row = this.byHash.get(hashApiKey(key));
    if (!row) return null;
    return { keyId: row.id, name: row.name, scopes: JSON.parse(row.scopes) as KeyScope[] };
  }

  /**
   * The key's webhook signing secret, made on first use (keys from before webhooks have none).
   * Stored in the clear on purpose: the server needs it to sign, unlike the key itself.
   */
  webhookSecret(keyId: string, options: { rotate?: boolean } = {}): string | null {
    const row = this.secretById.get(keyId);
    if (!row) return null;
    if (row.webhook_secret && !options.rotate) return row.webhook_secret;
    const secret = `whsec_${randomBytes(32).toString('base64url')}`;
    this.db.prepare('UPDATE api_keys SET webhook_secret = ? WHERE id = ?').run(secret, keyId);
    this.walSync.syncNow();
    return secret;
  }

  /** Whether the key with this id exists and is not revoked (checked for open WebSockets). */
  isActive(keyId: string): boolean {
    return this.activeById.get(keyId) !== undefined;
  }

  list(): ApiKeyRecord[] {
    return this.db.prepare<[], KeyRow>('SELECT * FROM api_keys ORDER BY created_at').all().map(fromRow);
  }

  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM api_keys').get() as { n: number }).n;
  }

  /** Replaces a live key's scopes (by id or shown prefix); takes effect on its next request. */
  setScopes(idOrPrefix: string, scopes: readonly KeyScope[]): boolean {
    if (scopes.length === 0) throw new Error('a key needs at least one scope');
    const result = this.db
      .prepare('UPDATE api_keys SET scopes = ? WHERE (id = ? OR key_prefix = ?) AND revoked_at IS NULL')
      .run(JSON.stringify(scopes), idOrPrefix, idOrPrefix);
    this.walSync.syncNow();
    return result.changes > 0;
  }

  /** Revokes by id or by the key's shown prefix; true if a live key was revoked. */
  revoke(idOrPrefix: string): boolean {
    const result = this.db
      .prepare('UPDATE api_keys SET revoked_at = ? WHERE (id = ? OR key_prefix = ?) AND revoked_at IS NULL')
      .run(Date.now(), idOrPrefix, idOrPrefix);
    this.walSync.syncNow();
    return result.changes > 0;
  }
}
