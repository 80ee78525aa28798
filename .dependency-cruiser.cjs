/**
 * Import rules for src/, checked by `npm run lint:deps` (part of `npm test`).
 * The folders of src/ are layered: each may import only the ones listed before it, so there are
 * no cycles between folders and each layer can be read (and tested) without the ones above it.
 */
const LAYERS = [
  'errors.ts', // ApiError, the errors every layer may raise
  'logger.ts',
  'retry', // back-off
  'concurrency', // bounded background tasks
  'metrics', // what is measured (prom-client definitions, one registry per app)
  'diffusion', // the SD 1.5 core: imports nothing else of src/
  'net',
  'storage',
  'generation', // what a request is
  'client', // generated typed GraphQL operations
  'cli', // the sd15 command: a client of the API, built on client/ (and generation/) only
  'limits',
  'catalogue',
  'contract', // the REST wire format
  'images',
  'auth',
  'config.ts',
  'engines',
  'jobs',
  'runner',
  'queue', // beyond one machine: the BullMQ queue, its workers, job events and cancels on Redis
  'webhooks',
  'retention', // the sweep of old jobs and orphan images, and the lock that keeps it to one process
  'open-stores.ts', // openStores(): SQLite or Postgres, for API and worker processes alike
  'schema',
  'http', // routing, GraphQL over HTTP and WebSocket, REST, images, GraphiQL, request limits
  'app.ts', // the wiring: buildApp() owns every part's start and stop
  'worker-app.ts', // a worker process's wiring: buildWorker()
  'main.ts',
  'worker.ts', // npm run worker
];

const path = (entry) => (entry.endsWith('.ts') ? `^src/${entry.replace('.', '\\.')}$` : `^src/${entry}/`);

module.exports = {
  forbidden: [
    ...LAYERS.slice(0, -1).map((entry, i) => ({
      name: `layer-${entry}`,
      comment: `${entry} may import only what comes before it in .dependency-cruiser.cjs's LAYERS`,
      severity: 'error',
      from: { path: path(entry) },
      to: { path: LAYERS.slice(i + 1).map(path) },
    })),
    {
      name: 'cli-is-a-client',
      comment: 'the sd15 command reaches the server only through its API: of src/ it imports client/ and generation/',
      severity: 'error',
      from: { path: '^src/cli/' },
      to: { path: '^src/', pathNot: ['^src/cli/', '^src/client/', '^src/generation/'] },
    },
    {
      name: 'unlisted-folder',
      comment: 'every folder and root file of src/ has its place in LAYERS',
      severity: 'error',
      from: { path: '^src/', pathNot: LAYERS.map(path) },
      to: {},
    },
    {
      name: 'no-circular',
      comment: 'no module imports itself through others',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
