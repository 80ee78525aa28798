import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { STUDIO_JS_BUDGET_BYTES, studioScriptBytes } from '../scripts/studio-size.js';
import { STUDIO_DIR } from '../src/http/studio.js';

const run = promisify(execFile);

/** Every file under a folder, by its path relative to it. */
function files(dir: string): Map<string, Buffer> {
  const found = new Map<string, Buffer>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile())
      found.set(path.relative(dir, path.join(entry.parentPath, entry.name)), readFileSync(path.join(entry.parentPath, entry.name)));
  }
  return found;
}

/**
 * studio/dist/ is committed so that a fresh clone serves the studio with no build step; this
 * builds the sources again and requires the same bytes (run `npm run studio:build` after a change).
 */
describe('the committed studio build', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'studio-build-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('is what the sources build to, byte for byte', async () => {
    const vite = path.resolve('node_modules/vite/bin/vite.js');
    await run(
      process.execPath,
      [vite, 'build', '--config', 'studio/vite.config.ts', '--outDir', out, '--emptyOutDir', '--logLevel', 'warn'],
      {
        // As `npm run studio:build` runs it: under vitest's NODE_ENV=test, Vite would make a development build.
        env: { ...process.env, NODE_ENV: 'production' },
      },
    );
    const built = files(out);
    const committed = files(STUDIO_DIR);
    expect([...committed.keys()].sort(), 'the files of studio/dist (run npm run studio:build)').toEqual([...built.keys()].sort());
    for (const [name, bytes] of built)
      expect(committed.get(name)?.equals(bytes), `studio/dist/${name} is stale (run npm run studio:build)`).toBe(true);
  }, 120_000);

  it(`keeps the page's own JavaScript under ${STUDIO_JS_BUDGET_BYTES / 1024} KB gzipped`, () => {
    expect(studioScriptBytes(STUDIO_DIR)).toBeLessThan(STUDIO_JS_BUDGET_BYTES);
  });
});
