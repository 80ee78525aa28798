import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // graphql 16 has no "exports" map: Node resolves it to its CommonJS build (as Pothos and yoga
    // get it), while Vite would pick the ESM build for our sources. Two copies of graphql break
    // instanceof checks ("Cannot use GraphQLEnumType from another module"), so pin the one Node uses.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // DATABASE_URL and REDIS_URL name the test PostgreSQL and Redis; servers a test starts get them only when it says so.
    setupFiles: ['./test/helpers/env-setup.ts'],
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Each file starts its own servers on port 0 with its own DATA_DIR, so files run in parallel.
    pool: 'forks',
  },
});
