import sharp from 'sharp';
import { request, type Agent } from 'undici';
import { parseAllowHosts, type AllowList } from '../net/address-policy.js';
import { AddressRefused, checkOutboundUrl, createGuardedAgent, findCause } from '../net/guarded-agent.js';
import { otherImageType, sniffImageType } from './sniff.js';

/**
 * Fetches an init or mask image named by an API client: an http(s) URL or a base64 data: URL.
 * The URL is untrusted, so the fetch is limited in where it may connect (public addresses only,
 * checked after DNS resolution and on every redirect; see address-policy.ts), how long it may
 * take, how many bytes it may read, and how many pixels the image may declare (a small file can
 * decode to gigabytes). Only bytes that sniff as PNG, JPEG or WebP are accepted; the content type
 * a server sends is not trusted.
 */

export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 15_000;
export const DEFAULT_MAX_PIXELS = 4096 * 4096;
export const DEFAULT_MAX_REDIRECTS = 5;

export interface ImageFetcherOptions {
  /** Hostnames (exact, case-insensitive) or CIDR ranges that may be non-public addresses. */
  allowHosts?: string[];
  /** For the whole fetch: DNS, connecting, every redirect and the body. */
  timeoutMs?: number;
  maxBytes?: number;
  /** width * height as the image header declares it, read before any pixel is decoded. */
  maxPixels?: number;
  maxRedirects?: number;
}

export class ImageFetchError extends Error {
  constructor(
    readonly field: string,
    /** What is wrong, without the field's name. */
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
    this.name = 'ImageFetchError';
  }
}

const DATA_URL = /^\s*data:/i;

/**
 * A data: URL's bytes are in the request, so they are judged when it arrives, by the rules a
 * fetch applies: base64, at most maxBytes, PNG/JPEG/WebP by their bytes, a readable header of at
 * most maxPixels. Returns what is wrong, or null (also for other URLs: those are judged when
 * fetched).
 */
export async function checkDataUrl(url: string, limits: { maxBytes?: number; maxPixels?: number } = {}): Promise<string | null> {
  const scheme = DATA_URL.exec(url.slice(0, 16));
  if (!scheme) return null;
  try {
    const data = decodeDataUrl(url, scheme[0].length, '', limits.maxBytes ?? MAX_IMAGE_BYTES);
    await checkImage(data, '', limits.maxPixels ?? DEFAULT_MAX_PIXELS);
    return null;
  } catch (err) {
    if (err instanceof ImageFetchError) return err.reason;
    throw err;
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class ImageFetcher {
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly maxPixels: number;
  readonly maxRedirects: number;
  private readonly allow: AllowList;
  private readonly agent: Agent;

  constructor(options: ImageFetcherOptions = {}) {
    this.allow = parseAllowHosts(options.allowHosts ?? []);
    this.timeoutMs = positive('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.maxBytes = positive('maxBytes', options.maxBytes ?? MAX_IMAGE_BYTES);
    this.maxPixels = positive('maxPixels', options.maxPixels ?? DEFAULT_MAX_PIXELS);
    this.maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    if (!Number.isInteger(this.maxRedirects) || this.maxRedirects < 0) throw new Error('maxRedirects must be an integer >= 0');
    this.agent = createGuardedAgent(this.allow, this.timeoutMs);
  }

  async fetch(url: string, field: string): Promise<Buffer> {
    // Checked on the raw string: a data: URL may be megabytes, and URL parsing would copy it.
    const scheme = DATA_URL.exec(url.slice(0, 16));
    const data = scheme ? decodeDataUrl(url, scheme[0].length, field, this.maxBytes) : await this.download(url, field);
    await checkImage(data, field, this.maxPixels);
    return data;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async download(url: string, field: string): Promise<Buffer> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    let target = url;
    let hop = 0;
    try {
      target = this.checkUrl(url, field);
      for (; ; hop++) {
        const res = await request(target, {
          method: 'GET',
          dispatcher: this.agent,
          signal: controller.signal,
          headers: { accept: 'image/png, image/jpeg, image/webp' },
        });
        const location = res.headers.location;
        if (REDIRECTS.has(res.statusCode) && location) {
          await res.body.dump();
          if (hop >= this.maxRedirects) throw new ImageFetchError(field, `was redirected more than ${this.maxRedirects} times`);
          const next = String(Array.isArray(location) ? location[0] : location);
          const resolved = URL.canParse(next, target) ? new URL(next, target).href : next;
          target = this.checkUrl(resolved, field, `was redirected to ${resolved};`);
          continue;
        }
        if (res.statusCode !== 200) {
          await res.body.dump();
          throw new ImageFetchError(field, `could not be fetched: HTTP ${res.statusCode}`);
        }
        const declared = Number(res.headers['content-length']);
        if (declared > this.maxBytes) {
          res.body.destroy();
          throw new ImageFetchError(field, `is ${declared} bytes; the limit is ${this.maxBytes}`);
        }
        // Counted as it streams too: the length may be absent (chunked) or wrong.
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of res.body) {
          size += (chunk as Buffer).length;
          if (size > this.maxBytes) {
            res.body.destroy();
            throw new ImageFetchError(field, `is more than ${this.maxBytes} bytes; the limit is ${this.maxBytes}`);
          }
          chunks.push(chunk as Buffer);
        }
        return Buffer.concat(chunks);
      }
    } catch (err) {
      if (err instanceof ImageFetchError) throw err;
      const refused = findCause(err, AddressRefused);
      if (refused) throw new ImageFetchError(field, hop > 0 ? `was redirected to ${target}; ${refused.message}` : refused.message);
      if (controller.signal.aborted) throw new ImageFetchError(field, `could not be fetched within ${this.timeoutMs} ms`);
      throw new ImageFetchError(field, `could not be fetched: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Scheme and, for IP-literal hosts (which the socket connects to without a lookup), address. */
  private checkUrl(url: string, field: string, context = ''): string {
    const first = context === '';
    const checked = checkOutboundUrl(url, this.allow);
    if ('url' in checked) return checked.url.href;
    switch (checked.kind) {
      case 'invalid':
        throw new ImageFetchError(field, first ? 'is not a valid URL' : `${context} that is not a valid URL`);
      case 'scheme':
        throw new ImageFetchError(
          field,
          `${first ? `${checked.refusal}; only http:, https: and base64 data: URLs` : `${context} only http: and https: redirects`} are accepted`,
        );
      case 'address':
        throw new ImageFetchError(field, first ? checked.refusal : `${context} ${checked.refusal}`);
    }
  }
}

/** Reads the header only (sharp's metadata decodes no pixels), so a decompression bomb costs nothing. */
async function checkImage(data: Buffer, field: string, maxPixels: number): Promise<void> {
  if (!sniffImageType(data)) {
    const other = otherImageType(data);
    throw new ImageFetchError(field, `is not a PNG, JPEG or WebP image${other ? ` (it is a ${other})` : ''}`);
  }
  let width: number | undefined;
  let height: number | undefined;
  try {
    ({ width, height } = await sharp(data, { limitInputPixels: false }).metadata());
  } catch (err) {
    throw new ImageFetchError(field, `is not a readable image: ${decoderMessage(err)}`);
  }
  if (!width || !height) throw new ImageFetchError(field, 'is not a readable image: it declares no size');
  if (width * height > maxPixels) {
    throw new ImageFetchError(field, `is ${width}x${height} pixels; the limit is ${maxPixels} pixels`);
  }
}

function decodeDataUrl(url: string, start: number, field: string, maxBytes: number): Buffer {
  const comma = url.indexOf(',', start);
  const header = comma < 0 ? '' : url.slice(start, comma).trim().toLowerCase();
  const params = header.split(';');
  if (comma < 0 || params.at(-1) !== 'base64') throw new ImageFetchError(field, 'is a data: URL that is not base64-encoded');
  if (!params[0]!.startsWith('image/')) throw new ImageFetchError(field, 'is a data: URL whose media type is not image/*');
  // The decoded size follows from the length; refuse before decoding so a huge URL costs no buffer.
  const length = url.length - comma - 1;
  const padding = url.endsWith('==') ? 2 : url.endsWith('=') ? 1 : 0;
  const size = Math.floor((length * 3) / 4) - padding;
  if (size > maxBytes) throw new ImageFetchError(field, `is ${size} bytes; the limit is ${maxBytes}`);
  const payload = url.slice(comma + 1);
  // Buffer.from skips characters outside the alphabet, so garbage would decode to something.
  // Simple scans, no backtracking: the payload is attacker-sized.
  if (/[^A-Za-z0-9+/_\-\s=]|=[^=\s]|===/.test(payload)) throw new ImageFetchError(field, 'is a data: URL with invalid base64');
  return Buffer.from(payload, 'base64');
}

/** libvips' words, one line: it repeats itself over several, and ends some with a bare colon. */
function decoderMessage(err: unknown): string {
  const lines = (err instanceof Error ? err.message : String(err)).split('\n').map((l) => l.trim().replace(/:$/, ''));
  return [...new Set(lines.filter(Boolean))].join('; ').slice(0, 300);
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
}
