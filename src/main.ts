import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { StorageUnavailableError } from './storage/storage-fault.js';
import { RunnerTakenError } from './runner/runner-claim.js';

/** Entry point: config from the environment, the app, signals. Nothing else. */

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

let app;
try {
  app = await buildApp(config);
} catch (err) {
  if (err instanceof StorageUnavailableError) {
    // Postgres down or unreachable at start: say so in one line, and let the supervisor retry.
    process.stderr.write(`cannot reach the database (DATABASE_URL): ${(err.cause as Error | undefined)?.message ?? err.message}\n`);
    process.exit(1);
  }
  throw err;
}

const first = await app.keys.createFirst('default');
if (first) {
  const { key } = first;
  // Printed once, on its own line: this is the only time the plain key exists.
  process.stdout.write(
    `\nNo API key existed, so one was created. Keep it; it is not shown again:\n\n${key}\n\n` +
      `Send it as the API-Key header. More keys: npm run keys -- create --name NAME\n\n`,
  );
}

for (const notice of config.notices) app.logger.warn(notice);
if (config.engine.kind === 'imagepipeline' && !config.engine.apiKey) {
  app.logger.warn({ upstream: config.engine.url }, 'IMAGEPIPELINE_API_KEY is not set: an upstream that needs a key will refuse every job');
}

let url;
try {
  url = await app.start();
} catch (err) {
  if (err instanceof RunnerTakenError) {
    process.stderr.write(`${err.message}\n`);
    await app.stop();
    process.exit(2);
  }
  throw err;
}
process.stdout.write(`GraphQL API and GraphiQL at ${url}/graphql\n`);
if (config.studio) process.stdout.write(`Web studio at ${url}/\n`);

let shuttingDown = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (shuttingDown) {
      app.logger.warn(`second ${signal}: exiting now`);
      process.exit(1);
    }
    shuttingDown = true;
    app.logger.info(`${signal} received: shutting down`);
    app.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        app.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
