/**
 * Runs before every test file (vitest.config.ts setupFiles). DATABASE_URL, which CI sets, names
 * the test PostgreSQL: it is kept as TEST_DATABASE_URL and removed from the environment, so that
 * the servers, keys commands and CLIs a test starts as processes use SQLite in their DATA_DIR, as
 * they always have, unless the test gives them a DATABASE_URL (its own schema) itself.
 */
if (process.env.DATABASE_URL) {
  process.env.TEST_DATABASE_URL ??= process.env.DATABASE_URL;
  delete process.env.DATABASE_URL;
}
