/**
 * Runs before every test file (vitest.config.ts setupFiles). DATABASE_URL and REDIS_URL, which CI
 * sets, name the test PostgreSQL and the test Redis: they are kept as TEST_DATABASE_URL and
 * TEST_REDIS_URL and removed from the environment, so that the servers, keys commands and CLIs a
 * test starts (in this process or as processes) use SQLite in their DATA_DIR and run jobs in
 * process, as they always have, unless the test gives them a DATABASE_URL (its own schema) or a
 * REDIS_URL (with its own prefix) itself.
 */
if (process.env.DATABASE_URL) {
  process.env.TEST_DATABASE_URL ??= process.env.DATABASE_URL;
  delete process.env.DATABASE_URL;
}
if (process.env.REDIS_URL) {
  process.env.TEST_REDIS_URL ??= process.env.REDIS_URL;
  delete process.env.REDIS_URL;
}
