// Entry of the generation thread when the server runs from TypeScript sources (npm start, tests):
// a worker thread does not inherit the parent's tsx loader on every Node version, so load it here.
import { tsImport } from 'tsx/esm/api';

await tsImport('./thread-main.ts', import.meta.url);
