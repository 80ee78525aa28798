import { randomBytes } from 'node:crypto';
import type { QueryResultRow } from 'pg';
import { pgCall, pgTransaction, type PgClient, type PgPool } from '../storage/postgres.js';
import { generateApiKey, hashApiKey, KEY_SCOPES, type KeyScope, type Principal } from './api-key.js';
import { findKey, type ApiKeyRecord, type KeyStore } from './key-store.js';

interface KeyRow {
  id: string;
  name: string;
  key_prefix: string;
  scopes: KeyScope[]; // json: parsed by node-postgres
  created_at: Date;
  revoked_at: Date | null;
}

const fromRow = (row: KeyRow): ApiKeyRecord => ({
  id: row.id,
  name: row.name,
  prefix: row.key_prefix,
  scopes: row.scopes,
  createdAt: row.created_at,
  revokedAt: row.revoked_at,
});

/**
 * API keys in PostgreSQL (DATABASE_URL), shared by every process: a key made or revoked by the
 * keys command, or on another replica, counts on the next request here.
 */
export class PgKeyStore implements KeyStore {
  constructor(private readonly pool: PgPool) {}

  async create(name: string, scopes: readonly KeyScope[] = KEY_SCOPES): Promise<{ key: string; record: ApiKeyRecord }> {
    return pgCall(() => this.insert(this.pool, name, scopes));
  }

  async createFirst(name: string): Promise<{ key: string; record: ApiKeyRecord } | null> {
    return pgTransaction(this.pool, async (client) => {
      // Processes starting at once queue here; the count after the lock sees a key another committed.
      await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('sd15-graphql-api first key ' || current_schema(), 0))`);
      const rows = await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM api_keys');
      return Number(rows.rows[0]!.n) === 0 ? this.insert(client, name) : null;
    });
  }

  private async insert(db: PgPool | PgClient, name: string, scopes: readonly KeyScope[] = KEY_SCOPES) {
    const trimmed = name.trim();
    if (!trimmed) throw new Error('a key needs a non-empty name');
    const { id, key, hash, prefix } = generateApiKey();
    const createdAt = new Date();
    await db.query('INSERT INTO api_keys (id, name, key_hash, key_prefix, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      id,
      trimmed,
      hash,
      prefix,
      JSON.stringify(scopes),
      createdAt,
    ]);
    return { key, record: { id, name: trimmed, prefix, scopes: [...scopes], createdAt, revokedAt: null } };
  }

  async authenticate(key: string): Promise<Principal | null> {
    const rows = await this.query<KeyRow>('SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL', [hashApiKey(key)]);
    const row = rows[0];
    return row ? { keyId: row.id, name: row.name, scopes: row.scopes } : null;
  }

  async webhookSecret(keyId: string, options: { rotate?: boolean } = {}): Promise<string | null> {
    if (!options.rotate) {
      const rows = await this.query<{ webhook_secret: string | null }>(
        'SELECT webhook_secret FROM api_keys WHERE id = $1 AND revoked_at IS NULL',
        [keyId],
      );
      if (rows.length === 0) return null;
      if (rows[0]!.webhook_secret) return rows[0]!.webhook_secret;
    }
    const secret = `whsec_${randomBytes(32).toString('base64url')}`;
    // Two processes making the first secret at once: the one that wrote first stands, for both.
    const rows = await this.query<{ webhook_secret: string }>(
      `UPDATE api_keys SET webhook_secret = $2
       WHERE id = $1 AND revoked_at IS NULL AND ($3 OR webhook_secret IS NULL)
       RETURNING webhook_secret`,
      [keyId, secret, options.rotate ?? false],
    );
    if (rows[0]) return rows[0].webhook_secret;
    if (options.rotate) return null; // not live
    const again = await this.query<{ webhook_secret: string | null }>(
      'SELECT webhook_secret FROM api_keys WHERE id = $1 AND revoked_at IS NULL',
      [keyId],
    );
    return again[0]?.webhook_secret ?? null;
  }

  async isActive(keyId: string): Promise<boolean> {
    const rows = await this.query('SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL', [keyId]);
    return rows.length > 0;
  }

  async list(): Promise<ApiKeyRecord[]> {
    return (await this.query<KeyRow>('SELECT * FROM api_keys ORDER BY created_at, seq')).map(fromRow);
  }

  async count(): Promise<number> {
    const rows = await this.query<{ n: string }>('SELECT COUNT(*) AS n FROM api_keys');
    return Number(rows[0]!.n);
  }

  async find(reference: string): Promise<{ record: ApiKeyRecord } | { problem: string }> {
    return findKey(reference, await this.list(), async (hash) => {
      const rows = await this.query<{ id: string }>('SELECT id FROM api_keys WHERE key_hash = $1', [hash]);
      return rows[0]?.id;
    });
  }

  async setScopes(id: string, scopes: readonly KeyScope[]): Promise<boolean> {
    if (scopes.length === 0) throw new Error('a key needs at least one scope');
    const rows = await this.query('UPDATE api_keys SET scopes = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id', [
      id,
      JSON.stringify(scopes),
    ]);
    return rows.length > 0;
  }

  async revoke(id: string): Promise<boolean> {
    const rows = await this.query('UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id', [
      id,
      new Date(),
    ]);
    return rows.length > 0;
  }

  private async query<R extends QueryResultRow = QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const result = await pgCall(() => this.pool.query<R>(sql, params));
    return result.rows;
  }
}
