// Entry of the generation worker when the server runs from TypeScript sources (npm start, tests):
// a worker thread does not inherit the parent's tsx loader on every Node version, so load it here.
import { tsImport } from 'tsx/esm/api';

await tsImport('./generation-worker.ts', import.meta.url);
