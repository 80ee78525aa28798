import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalImageStore, type ImageStore } from './image-store.js';
import { S3ImageStore, type S3Location } from './s3-image-store.js';

/** IMAGE_STORE_URL, parsed: a local folder or a bucket with its key prefix. */
export type ImageStoreUrl = { kind: 'file'; dir: string } | { kind: 's3'; bucket: string; prefix: string };

/** What the app needs to open the store: the URL's parts and, for S3, how to reach the bucket. */
export type ImageStoreConfig = { kind: 'file'; dir: string } | ({ kind: 's3' } & S3Location);

const EXPECTED = 'must be file:///absolute/path or s3://bucket/prefix';
/** The rules of AWS for bucket names, which S3-compatible servers follow too. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses IMAGE_STORE_URL; throws an Error whose message says what is wrong (for the config's report). */
export function parseImageStoreUrl(value: string): ImageStoreUrl {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(value)?.[1]?.toLowerCase();
  if (scheme === 's3') return parseS3(value);
  if (scheme !== 'file') throw new Error(EXPECTED);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(EXPECTED);
  }
  if (url.host !== '' && url.host !== 'localhost') {
    throw new Error(`a file: URL names a folder on this machine, not on "${url.host}" (write file:///absolute/path)`);
  }
  if (url.search || url.hash) throw new Error('a file: URL takes no query or fragment');
  const dir = fileURLToPath(url);
  return { kind: 'file', dir: path.resolve(dir) };
}

function parseS3(value: string): ImageStoreUrl {
  const match = /^s3:\/\/([^/?#]*)(\/[^?#]*)?$/i.exec(value);
  if (!match) throw new Error('an s3: URL takes no query or fragment (s3://bucket/prefix)');
  const authority = match[1]!;
  if (authority.includes('@')) {
    throw new Error('credentials do not belong in IMAGE_STORE_URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  }
  if (authority === '') throw new Error('names no bucket (s3://bucket/prefix)');
  if (authority.includes(':')) throw new Error('an s3: URL names a bucket, not a server: set the endpoint in AWS_ENDPOINT_URL_S3');
  if (!BUCKET.test(authority) || authority.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(authority)) {
    throw new Error(`"${authority}" is not a valid bucket name (3 to 63 lowercase letters, digits, dots and hyphens)`);
  }
  const segments = (match[2] ?? '').split('/').filter(Boolean);
  if (segments.some((s) => s === '.' || s === '..')) throw new Error('the prefix may not contain "." or ".." segments');
  if (/\/\/./.test((match[2] ?? '').replace(/\/+$/, ''))) throw new Error('the prefix may not contain empty segments ("//")');
  return { kind: 's3', bucket: authority, prefix: segments.length > 0 ? `${segments.join('/')}/` : '' };
}

/** Opens the configured store (not yet initialised: call init()). */
export function createImageStore(config: ImageStoreConfig): ImageStore {
  return config.kind === 'file' ? new LocalImageStore({ dir: config.dir }) : new S3ImageStore(config);
}
