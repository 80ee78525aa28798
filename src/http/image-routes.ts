import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { ImageStore } from '../images/image-store.js';

export const IMAGES_PATH = '/images/';

/**
 * Serves stored images. No API key: the unguessable name is the capability, as with the
 * contract's download_urls, so the URLs work in <img> tags and plain downloads.
 */
export async function serveImage(store: ImageStore, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  // Stored names are plain base64url: anything needing decoding is not one of ours.
  const name = (req.url ?? '').split('?')[0]!.slice(IMAGES_PATH.length);
  const image = await store.open(name);
  if (!image) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('image not found');
    return;
  }
  res.writeHead(200, {
    'content-type': image.contentType,
    'content-length': image.size,
    // Names are never reused, so the bytes behind one never change.
    'cache-control': 'public, max-age=31536000, immutable',
    'x-content-type-options': 'nosniff',
  });
  if (req.method === 'HEAD') {
    image.stream.destroy();
    res.end();
    return;
  }
  await pipeline(image.stream, res).catch(() => res.destroy());
}
