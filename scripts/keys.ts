import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseScopes, type KeyScope } from '../src/auth/api-key.js';
import { SqliteKeyStore, type ApiKeyRecord, type KeyStore } from '../src/auth/key-store.js';
import { PgKeyStore } from '../src/auth/pg-key-store.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { createPgPool, migratePostgres } from '../src/storage/postgres.js';
import { openDatabase, WalSync } from '../src/storage/sqlite.js';
import { StorageUnavailableError } from '../src/storage/storage-fault.js';

/**
 * Manages API keys in the server's database: DATABASE_URL's Postgres when set, else DATA_DIR's
 * SQLite (safe while servers run: a revocation or a scope change counts from the key's next
 * request, on every server sharing the database; its open WebSockets are closed within a second).
 *   npm run --silent keys -- create --name NAME [--scopes generate]   (the key alone on the last line)
 *   npm run --silent keys -- list
 *   npm run --silent keys -- scopes KEY --scopes read-only
 *   npm run --silent keys -- revoke KEY
 *   npm run --silent keys -- webhook-secret KEY [--rotate]
 * KEY: the key's id, the whole key, or a prefix of either that names one live key.
 * Scopes, each including the ones before: read-only (read), generate, admin.
 */

const usage = `usage:
  keys create --name NAME [--scopes read-only|generate|admin]   (default: generate)
  keys list
  keys scopes KEY --scopes read-only|generate|admin
  keys revoke KEY
  keys webhook-secret KEY [--rotate]
KEY: the key's id, the whole key, or a prefix of either that names one live key`;

function scopesOption(): KeyScope[] {
  const { scopes, unknown } = parseScopes(values.scopes ?? 'generate');
  if (unknown.length) fail(`unknown scope(s): ${unknown.join(', ')} (known: read-only, generate, admin)`);
  if (scopes.length === 0) fail('give at least one scope');
  return scopes;
}

/** The live key the command line names, or a stop with why not. */
async function target(command: string): Promise<ApiKeyRecord> {
  const reference = positionals[1];
  if (!reference) fail(`${command} needs a key: its id, the key, or a prefix of either`);
  const found = await keys.find(reference);
  if ('problem' in found) fail(found.problem);
  return found.record;
}

function fail(message: string): never {
  process.stderr.write(`${message}\n${usage}\n`);
  process.exit(2);
}

const { positionals, values } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: { name: { type: 'string' }, scopes: { type: 'string' }, rotate: { type: 'boolean' } },
    });
  } catch (err) {
    return fail((err as Error).message);
  }
})();

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) fail(err.message);
  throw err;
}

/** The key store the server uses, and how to close it. */
async function openKeys(): Promise<{ keys: KeyStore; close: () => Promise<void> }> {
  if (config!.databaseUrl) {
    const pool = createPgPool(config!.databaseUrl);
    try {
      // The same migrations the server applies at start: the command works on a fresh database too.
      await migratePostgres(pool);
    } catch (err) {
      await pool.end();
      throw err;
    }
    return { keys: new PgKeyStore(pool), close: () => pool.end() };
  }
  const dbFile = path.join(config!.dataDir, 'sd-api.sqlite');
  const db = openDatabase(dbFile);
  const walSync = new WalSync(dbFile, config!.sqliteSynchronous === 'FULL');
  return {
    keys: new SqliteKeyStore(db, walSync),
    close: async () => {
      walSync.close();
      db.close();
    },
  };
}

let opened;
try {
  opened = await openKeys();
} catch (err) {
  if (err instanceof StorageUnavailableError) {
    process.stderr.write(`cannot reach the database (DATABASE_URL): ${(err.cause as Error).message}\n`);
    process.exit(1);
  }
  throw err;
}
const keys = opened.keys;

try {
  switch (positionals[0]) {
    case 'create': {
      if (!values.name?.trim()) fail('create needs --name NAME');
      const { key, record } = await keys.create(values.name, scopesOption());
      process.stdout.write(`created key ${record.id} "${record.name}" (scopes: ${record.scopes.join(', ')})\n${key}\n`);
      break;
    }
    case 'list':
      for (const k of await keys.list()) {
        const state = k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : 'active';
        process.stdout.write(`${k.id}  ${k.prefix}…  ${k.name}  [${k.scopes.join(',')}]  ${state}\n`);
      }
      break;
    case 'scopes': {
      if (!values.scopes) fail('scopes needs --scopes');
      const scopes = scopesOption();
      const record = await target('scopes');
      if (!(await keys.setScopes(record.id, scopes))) fail(`the key ${record.id} was revoked meanwhile`);
      process.stdout.write(`${record.id} (${record.prefix}…, "${record.name}") now has scopes: ${scopes.join(', ')}\n`);
      break;
    }
    case 'webhook-secret': {
      const record = await target('webhook-secret');
      const secret = await keys.webhookSecret(record.id, { rotate: values.rotate ?? false });
      if (!secret) fail(`the key ${record.id} was revoked meanwhile`);
      process.stdout.write(`${secret}\n`);
      break;
    }
    case 'revoke': {
      const record = await target('revoke');
      if (!(await keys.revoke(record.id))) fail(`the key ${record.id} was revoked meanwhile`);
      process.stdout.write(`revoked ${record.id} (${record.prefix}…, "${record.name}")\n`);
      break;
    }
    default:
      fail(positionals[0] ? `unknown command "${positionals[0]}"` : 'no command given');
  }
} catch (err) {
  if (err instanceof StorageUnavailableError) {
    process.stderr.write(`cannot reach the database (DATABASE_URL): ${(err.cause as Error).message}\n`);
    process.exitCode = 1;
  } else throw err;
} finally {
  await opened.close();
}
