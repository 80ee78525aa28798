import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { IMAGES_PATH } from '../images/image-links.js';
import type { ImageInfo, ImageStore, OpenedImage } from '../images/image-store.js';
import type { Logger } from '../logger.js';

export { IMAGES_PATH };

/**
 * Serves stored images, streamed from the store (a folder, or the bucket every replica
 * shares). No API key: the unguessable name is the capability, as with the contract's
 * download_urls, so the URLs work in <img> tags and plain downloads.
 */
export async function serveImage(store: ImageStore, req: IncomingMessage, res: ServerResponse, logger?: Logger): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  // Stored names are plain base64url: anything needing decoding is not one of ours.
  const name = (req.url ?? '').split('?')[0]!.slice(IMAGES_PATH.length);
  let image: ImageInfo | OpenedImage | null;
  try {
    image = req.method === 'HEAD' ? await store.stat(name) : await store.open(name);
  } catch (err) {
    // The store did not answer: nothing says the image is gone, so not a 404.
    logger?.warn({ err }, 'the image store could not be read');
    res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '5' }).end('the image store is unavailable');
    return;
  }
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
    ...(image.etag ? { etag: image.etag } : {}),
  });
  const stream = (image as Partial<OpenedImage>).stream;
  if (!stream) {
    res.end();
    return;
  }
  await pipeline(stream, res).catch(() => res.destroy());
}
