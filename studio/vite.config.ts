import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The web studio's build: studio/ → studio/dist/ (committed; the server serves it at /).
 * `npm run studio:dev` serves it with hot reload and passes the API through to a running server
 * (STUDIO_API_URL, default http://127.0.0.1:4000).
 */
const api = process.env.STUDIO_API_URL ?? 'http://127.0.0.1:4000';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // One modern target and no module preload polyfill: fewer bytes, and the same bytes on every build.
    target: 'es2022',
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/graphql': { target: api, ws: true },
      '/images': api,
    },
  },
});
