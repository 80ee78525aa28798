import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

/** The studio's own JavaScript may weigh this much, gzipped (the issue's budget). */
export const STUDIO_JS_BUDGET_BYTES = 250 * 1024;

/** The gzipped size of every script of a studio build (dist/assets/*.js), summed; gzip level 9, as a server would send it at best. */
export function studioScriptBytes(distDir: string): number {
  const assets = join(distDir, 'assets');
  return readdirSync(assets)
    .filter((name) => name.endsWith('.js'))
    .reduce((sum, name) => sum + gzipSync(readFileSync(join(assets, name)), { level: 9 }).length, 0);
}

// Run after `vite build` by `npm run studio:build`: prints the figure, fails over the budget.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dist = fileURLToPath(new URL('../studio/dist/', import.meta.url));
  const bytes = studioScriptBytes(dist);
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
  console.log(`studio JavaScript: ${kb(bytes)} gzipped (budget ${kb(STUDIO_JS_BUDGET_BYTES)})`);
  if (bytes > STUDIO_JS_BUDGET_BYTES) {
    console.error('over the budget');
    process.exit(1);
  }
}
