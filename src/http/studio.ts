import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CACHE_IMMUTABLE, CACHE_REVALIDATE, StaticAsset } from './static-asset.js';

/** The web studio's build (Vite), committed so that `npm start` serves it with no build step. */
export const STUDIO_DIR = fileURLToPath(new URL('../../studio/dist/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * What the studio's page may load: its own scripts and styles only (the API key lives in the
 * page's storage, so no other script may run there); images from anywhere (results behind
 * PUBLIC_URL, init images by URL, previews as data: URLs, painted masks as blobs); its API on the
 * same origin (HTTP and WebSocket).
 */
const STUDIO_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  'img-src * data: blob:',
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const PAGE_HEADERS = { 'content-security-policy': STUDIO_CSP, 'referrer-policy': 'no-referrer' };

/**
 * The studio's files by URL path, read once at start. Vite names everything under assets/ by
 * its content hash, so those are cached for good; the rest (index.html) is revalidated.
 */
export function loadStudio(dir = STUDIO_DIR): Map<string, StaticAsset> {
  const assets = new Map<string, StaticAsset>();
  if (!existsSync(dir)) return assets;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = join(entry.parentPath, entry.name);
    const path = '/' + relative(dir, file).split(sep).join('/');
    const type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
    const page = type.startsWith('text/html');
    assets.set(
      path,
      new StaticAsset(readFileSync(file), type, path.startsWith('/assets/') ? CACHE_IMMUTABLE : CACHE_REVALIDATE, page ? PAGE_HEADERS : {}),
    );
  }
  const index = assets.get('/index.html');
  if (index) assets.set('/', index);
  return assets;
}
