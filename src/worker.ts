import { ConfigError, loadConfig } from './config.js';
import { buildWorker } from './worker-app.js';

/** Entry point of npm run worker: config from the environment, the worker, signals. Nothing else. */

let config;
try {
  config = loadConfig();
  if (!config.queue) throw new ConfigError(['REDIS_URL: must be set for a worker (the Redis its jobs are queued on)']);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const app = await buildWorker(config);
for (const notice of config.notices) app.logger.warn(notice);
await app.start();
const metricsUrl = app.metricsUrl();
process.stdout.write(
  `Worker pulling jobs (${config.worker.concurrency} at a time)${metricsUrl ? `; metrics at ${metricsUrl}/metrics` : ''}\n`,
);

let shuttingDown = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (shuttingDown) {
      app.logger.warn(`second ${signal}: exiting now`);
      process.exit(1);
    }
    shuttingDown = true;
    app.logger.info(`${signal} received: finishing or handing back the running jobs`);
    // Past the grace period and a little more (Redis away, say), exit anyway: the queue's stalled
    // check gives the jobs to another worker.
    setTimeout(() => {
      app.logger.error('stop took too long: exiting');
      process.exit(1);
    }, config.shutdownGraceMs + 15_000).unref();
    app.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        app.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
