import { readFile } from 'node:fs/promises';
import { UsageError } from './errors.js';

/**
 * The schema takes initImage and maskImage as strings: an http(s) URL, which the server fetches,
 * or a data: URL. A local file therefore travels inline as a base64 data: URL (the server's
 * IMAGE_FETCH_MAX_BYTES bounds it, 20 MB by default); a URL is passed on as it is.
 */
export async function imageArgument(option: 'init' | 'mask', value: string): Promise<string> {
  if (/^(https?|data):/i.test(value)) return value;
  let bytes: Buffer;
  try {
    bytes = await readFile(value);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new UsageError(`--${option}: cannot read ${value} (${code})`);
  }
  const type = sniffImageType(bytes);
  if (!type) throw new UsageError(`--${option}: ${value} is not a PNG, JPEG or WebP image`);
  return `data:${type};base64,${bytes.toString('base64')}`;
}

/** The formats the server decodes, by their magic bytes (a file name's extension proves nothing). */
export function sniffImageType(bytes: Buffer): string | null {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'image/webp';
  return null;
}
