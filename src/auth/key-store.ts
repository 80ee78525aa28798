import { randomBytes } from 'node:crypto';
import type { SqliteDatabase, WalSync } from '../storage/sqlite.js';
import { API_KEY_LENGTH, API_KEY_PREFIX, generateApiKey, hashApiKey, KEY_SCOPES, type KeyScope, type Principal } from './api-key.js';

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  scopes: KeyScope[];
  createdAt: Date;
  revokedAt: Date | null;
}

/**
 * The API keys: SqliteKeyStore here, PgKeyStore (pg-key-store.ts) with DATABASE_URL. Lookups
 * reach the database every time, so a revocation counts at once, on every process. Methods
 * reject with StorageUnavailableError while a database server cannot be reached.
 */
export interface KeyStore {
  /** Creates a key; the plain key is returned here and never again. */
  create(name: string, scopes?: readonly KeyScope[]): Promise<{ key: string; record: ApiKeyRecord }>;
  /**
   * Creates a key only if there is none at all (a server's first start), atomically: of several
   * processes starting at once on an empty database, one gets the key, the others null.
   */
  createFirst(name: string): Promise<{ key: string; record: ApiKeyRecord } | null>;
  authenticate(key: string): Promise<Principal | null>;
  /**
   * The key's webhook signing secret, made on first use (keys from before webhooks have none).
   * Stored in the clear on purpose: the server needs it to sign, unlike the key itself.
   */
  webhookSecret(keyId: string, options?: { rotate?: boolean }): Promise<string | null>;
  /** Whether the key with this id exists and is not revoked (checked for open WebSockets). */
  isActive(keyId: string): Promise<boolean>;
  /** Every key, oldest first. */
  list(): Promise<ApiKeyRecord[]>;
  count(): Promise<number>;
  /**
   * The one live key an operator names: by its id, by the whole key (found by its hash), or by a
   * prefix of either (longer than the one `list` shows, too) that no other live key has.
   */
  find(reference: string): Promise<{ record: ApiKeyRecord } | { problem: string }>;
  /** Replaces a live key's scopes; takes effect on its next request. False if it is not live. */
  setScopes(id: string, scopes: readonly KeyScope[]): Promise<boolean>;
  /** Revokes a live key; true if it was live. */
  revoke(id: string): Promise<boolean>;
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

/** Characters a reference must carry (after "sdk_" for a key) to name a key. */
const MIN_REFERENCE_CHARS = 4;

/**
 * The one live key an operator names (KeyStore.find), among all keys, with idByHash to look a
 * whole key up by its hash: the same rules for every store.
 */
export async function findKey(
  reference: string,
  keys: ApiKeyRecord[] | Promise<ApiKeyRecord[]>,
  idByHash: (hash: string) => string | undefined | Promise<string | undefined>,
): Promise<{ record: ApiKeyRecord } | { problem: string }> {
  const ref = reference.trim();
  if (!ref) return { problem: 'give a key id, the key itself, or a prefix of either' };
  // "sdk_" starts every key: a prefix must say more than that, or one slip revokes the last key.
  const told = ref.startsWith(API_KEY_PREFIX) ? ref.length - API_KEY_PREFIX.length : ref.length;
  if (told < MIN_REFERENCE_CHARS) {
    return {
      problem: `"${ref}" is too short to name a key: give at least ${MIN_REFERENCE_CHARS} characters of its id, or of the key after "${API_KEY_PREFIX}"`,
    };
  }
  const all = await keys;
  const hashedId = await idByHash(hashApiKey(ref));
  let matches = all.filter((k) => k.id === (hashedId ?? ref));
  if (matches.length === 0 && ref.length < API_KEY_LENGTH) {
    // Only the shown prefix of a key is stored: a longer one is matched on that part.
    matches = all.filter((k) => k.id.startsWith(ref) || k.prefix.startsWith(ref) || ref.startsWith(k.prefix));
  }
  const live = matches.filter((k) => !k.revokedAt);
  if (live.length === 1) return { record: live[0]! };
  if (live.length > 1) {
    const named = live.map((k) => `${k.id} (${k.prefix}…, "${k.name}")`).join(', ');
    return { problem: `"${ref}" names ${live.length} keys: ${named}; give more of it, or the id` };
  }
  if (matches.length > 0) return { problem: `the key "${ref}" names (${matches[0]!.id}) is already revoked` };
  return { problem: `no key has the id, key or prefix "${ref}"` };
}

/** API keys in SQLite. Lookups hit the database every time so a revocation counts at once. */
export class SqliteKeyStore implements KeyStore {
  private readonly byHash;
  private readonly activeById;
  private readonly secretById;
  private readonly idByHash;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly walSync: WalSync,
  ) {
    this.byHash = db.prepare<[string], KeyRow>('SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL');
    this.secretById = db.prepare<[string], { webhook_secret: string | null }>(
      'SELECT webhook_secret FROM api_keys WHERE id = ? AND revoked_at IS NULL',
    );
    this.activeById = db.prepare<[string], { one: number }>('SELECT 1 AS one FROM api_keys WHERE id = ? AND revoked_at IS NULL');
    this.idByHash = db.prepare<[string], { id: string }>('SELECT id FROM api_keys WHERE key_hash = ?');
  }

  async create(name: string, scopes: readonly KeyScope[] = KEY_SCOPES): Promise<{ key: string; record: ApiKeyRecord }> {
    const created = this.insert(name, scopes);
    this.walSync.syncNow();
    return created;
  }

  async createFirst(name: string): Promise<{ key: string; record: ApiKeyRecord } | null> {
    // IMMEDIATE takes the write lock before the count: a process starting at the same time waits, then sees the key.
    const created = this.db
      .transaction(() =>
        (this.db.prepare('SELECT COUNT(*) AS n FROM api_keys').get() as { n: number }).n === 0 ? this.insert(name) : null,
      )
      .immediate();
    if (created) this.walSync.syncNow();
    return created;
  }

  private insert(name: string, scopes: readonly KeyScope[] = KEY_SCOPES): { key: string; record: ApiKeyRecord } {
    const trimmed = name.trim();
    if (!trimmed) throw new Error('a key needs a non-empty name');
    const { id, key, hash, prefix } = generateApiKey();
    const createdAt = Date.now();
    this.db
      .prepare('INSERT INTO api_keys (id, name, key_hash, key_prefix, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(id, trimmed, hash, prefix, JSON.stringify(scopes), createdAt);
    return {
      key,
      record: { id, name: trimmed, prefix, scopes: [...scopes], createdAt: new Date(createdAt), revokedAt: null },
    };
  }

  async authenticate(key: string): Promise<Principal | null> {
    const row = this.byHash.get(hashApiKey(key));
    if (!row) return null;
    return { keyId: row.id, name: row.name, scopes: JSON.parse(row.scopes) as KeyScope[] };
  }

  async webhookSecret(keyId: string, options: { rotate?: boolean } = {}): Promise<string | null> {
    const row = this.secretById.get(keyId);
    if (!row) return null;
    if (row.webhook_secret && !options.rotate) return row.webhook_secret;
    const secret = `whsec_${randomBytes(32).toString('base64url')}`;
    this.db.prepare('UPDATE api_keys SET webhook_secret = ? WHERE id = ?').run(secret, keyId);
    this.walSync.syncNow();
    return secret;
  }

  async isActive(keyId: string): Promise<boolean> {
    return this.activeById.get(keyId) !== undefined;
  }

  async list(): Promise<ApiKeyRecord[]> {
    return this.listNow();
  }

  private listNow(): ApiKeyRecord[] {
    return this.db.prepare<[], KeyRow>('SELECT * FROM api_keys ORDER BY created_at, rowid').all().map(fromRow);
  }

  async count(): Promise<number> {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM api_keys').get() as { n: number }).n;
  }

  async find(reference: string): Promise<{ record: ApiKeyRecord } | { problem: string }> {
    return findKey(reference, this.listNow(), (hash) => this.idByHash.get(hash)?.id);
  }

  async setScopes(id: string, scopes: readonly KeyScope[]): Promise<boolean> {
    if (scopes.length === 0) throw new Error('a key needs at least one scope');
    const result = this.db.prepare('UPDATE api_keys SET scopes = ? WHERE id = ? AND revoked_at IS NULL').run(JSON.stringify(scopes), id);
    this.walSync.syncNow();
    return result.changes > 0;
  }

  async revoke(id: string): Promise<boolean> {
    const result = this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(Date.now(), id);
    this.walSync.syncNow();
    return result.changes > 0;
  }
}
