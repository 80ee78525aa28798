import { Agent, request } from 'undici';
import { sniffImageType } from './sniff.js';

/**
 * Fetches an init or mask image named by URL: http(s) or a base64 data: URL, within a time
 * and byte limit, accepted only if its bytes are PNG, JPEG or WebP (the content type a server
 * sends is not trusted). Redirects are not followed.
 *
 * TODO(issue [4]): refuse private, loopback and link-local addresses after DNS resolution.
 */

export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
const TIMEOUT_MS = 15_000;

export class ImageFetchError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'ImageFetchError';
  }
}

const agent = new Agent({ headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS, connect: { timeout: TIMEOUT_MS } });

export async function fetchImage(url: string, field: string): Promise<Buffer> {
  const data = url.startsWith('data:') ? decodeDataUrl(url, field) : await download(url, field);
  if (!sniffImageType(data)) throw new ImageFetchError(field, 'is not a PNG, JPEG or WebP image');
  return data;
}

function decodeDataUrl(url: string, field: string): Buffer {
  const match = /^data:image\/[a-z0-9.+-]+;base64,(.*)$/is.exec(url);
  if (!match) throw new ImageFetchError(field, 'is not a base64 data: URL of an image');
  const data = Buffer.from(match[1]!, 'base64');
  if (data.length > MAX_IMAGE_BYTES) throw new ImageFetchError(field, `is larger than ${MAX_IMAGE_BYTES} bytes`);
  return data;
}

async function download(url: string, field: string): Promise<Buffer> {
  let res;
  try {
    res = await request(url, { method: 'GET', dispatcher: agent, headers: { accept: 'image/*' } });
  } catch (err) {
    throw new ImageFetchError(field, `could not be fetched: ${(err as Error).message}`);
  }
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new ImageFetchError(field, `could not be fetched: HTTP ${res.statusCode}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_IMAGE_BYTES) {
        res.body.destroy();
        throw new ImageFetchError(field, `is larger than ${MAX_IMAGE_BYTES} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof ImageFetchError) throw err;
    throw new ImageFetchError(field, `download was cut off: ${(err as Error).message}`);
  }
  return Buffer.concat(chunks);
}
