import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseScopes, type KeyScope } from '../src/auth/api-key.js';
import { SqliteKeyStore, type ApiKeyRecord } from '../src/auth/key-store.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { openDatabase, WalSync } from '../src/storage/sqlite.js';

/**
 * Manages API keys in DATA_DIR's database (safe while the server runs: a revocation or a scope
 * change counts from the key's next request; its open WebSockets are closed within a second).
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
function target(command: string): ApiKeyRecord {
  const reference = positionals[1];
  if (!reference) fail(`${command} needs a key: its id, the key, or a prefix of either`);
  const found = keys.find(reference);
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

const dbFile = path.join(config.dataDir, 'sd-api.sqlite');
const db = openDatabase(dbFile);
const walSync = new WalSync(dbFile, config.sqliteSynchronous === 'FULL');
const keys = new SqliteKeyStore(db, walSync);

try {
  switch (positionals[0]) {
    case 'create': {
      if (!values.name?.trim()) fail('create needs --name NAME');
      const { key, record } = keys.create(values.name, scopesOption());
      process.stdout.write(`created key ${record.id} "${record.name}" (scopes: ${record.scopes.join(', ')})\n${key}\n`);
      break;
    }
    case 'list':
      for (const k of keys.list()) {
        const state = k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : 'active';
        process.stdout.write(`${k.id}  ${k.prefix}…  ${k.name}  [${k.scopes.join(',')}]  ${state}\n`);
      }
      break;
    case 'scopes': {
      if (!values.scopes) fail('scopes needs --scopes');
      const scopes = scopesOption();
      const record = target('scopes');
      if (!keys.setScopes(record.id, scopes)) fail(`the key ${record.id} was revoked meanwhile`);
      process.stdout.write(`${record.id} (${record.prefix}…, "${record.name}") now has scopes: ${scopes.join(', ')}\n`);
      break;
    }
    case 'webhook-secret': {
      const record = target('webhook-secret');
      const secret = keys.webhookSecret(record.id, { rotate: values.rotate ?? false });
      if (!secret) fail(`the key ${record.id} was revoked meanwhile`);
      process.stdout.write(`${secret}\n`);
      break;
    }
    case 'revoke': {
      const record = target('revoke');
      if (!keys.revoke(record.id)) fail(`the key ${record.id} was revoked meanwhile`);
      process.stdout.write(`revoked ${record.id} (${record.prefix}…, "${record.name}")\n`);
      break;
    }
    default:
      fail(positionals[0] ? `unknown command "${positionals[0]}"` : 'no command given');
  }
} finally {
  walSync.close();
  db.close();
}
