import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { imageNameType, newImageName, type ImageInfo, type ImageStore, type OpenedImage, type StoredImage } from './image-store.js';

/** Where and how to reach a bucket. Unset fields are left to the AWS SDK's own defaults. */
export interface S3Location {
  bucket: string;
  /** Key prefix, empty or ending in "/". */
  prefix: string;
  /** AWS_REGION; absent: the SDK's default chain (profile), else us-east-1 with a custom endpoint. */
  region: string | undefined;
  /** AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL); absent: AWS itself. */
  endpoint: string | undefined;
  /** Path-style addressing (http://host/bucket/key), which S3-compatible servers need. */
  forcePathStyle: boolean;
  /** AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); absent: the SDK's chain (profiles, web identity, instance roles). */
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
}

/** Longest a presigned URL may live: SigV4 refuses more than seven days. */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/** Names the bucket, never the credentials. */
export class ImageStoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImageStoreError';
  }
}

/**
 * Images as objects in an S3 bucket (AWS or any S3-compatible server), under an optional key
 * prefix. A PUT that succeeded is durable, so SUCCESS still means every image is stored.
 * Downloads stream the object's body; nothing is buffered whole.
 */
export class S3ImageStore implements ImageStore {
  readonly location: string;
  private readonly client: S3Client;

  constructor(private readonly s3: S3Location) {
    this.location = `s3://${s3.bucket}/${s3.prefix}`;
    this.client = new S3Client({
      region: s3.region ?? (s3.endpoint ? 'us-east-1' : undefined),
      endpoint: s3.endpoint,
      forcePathStyle: s3.forcePathStyle,
      credentials: s3.credentials,
      // The SDK's default (a CRC32 on every request and response) is refused by many
      // S3-compatible servers; checksums only where an operation requires one.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      requestHandler: {
        connectionTimeout: 5_000,
        // Idle time on the socket, not the whole transfer: a slow download of a large image goes on.
        requestTimeout: 30_000,
        // Every download in flight holds a socket until its client has the bytes.
        httpAgent: { keepAlive: true, maxSockets: 256 },
        httpsAgent: { keepAlive: true, maxSockets: 256 },
      },
    });
  }

  async init(): Promise<void> {
    await this.ping();
  }

  /** HEAD on the bucket: it exists and these credentials reach it. */
  async ping(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.s3.bucket }));
    } catch (err) {
      if (isNotFound(err)) throw new ImageStoreError(`S3 bucket "${this.s3.bucket}" does not exist`, { cause: err });
      throw this.error('refused access', err);
    }
  }

  async put(data: Buffer, contentType: string): Promise<StoredImage> {
    const name = newImageName(contentType);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.s3.bucket,
          Key: this.key(name),
          Body: data,
          ContentLength: data.length,
          ContentType: contentType,
          // Names are never reused, so the bytes behind one never change (presigned downloads too).
          CacheControl: 'public, max-age=31536000, immutable',
        }),
      );
    } catch (err) {
      throw this.error('refused the write', err);
    }
    return { name, contentType };
  }

  async open(name: string): Promise<OpenedImage | null> {
    const contentType = imageNameType(name);
    if (!contentType) return null;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.s3.bucket, Key: this.key(name) }));
      if (!(out.Body instanceof Readable)) throw new Error('the SDK gave no stream for the object');
      return { stream: out.Body, size: out.ContentLength ?? 0, contentType, ...(out.ETag ? { etag: out.ETag } : {}) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.error('could not be read', err);
    }
  }

  async stat(name: string): Promise<ImageInfo | null> {
    const contentType = imageNameType(name);
    if (!contentType) return null;
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.s3.bucket, Key: this.key(name) }));
      return { size: out.ContentLength ?? 0, contentType, ...(out.ETag ? { etag: out.ETag } : {}) };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.error('could not be read', err);
    }
  }

  async exists(name: string): Promise<boolean> {
    return (await this.stat(name)) !== null;
  }

  async delete(name: string): Promise<void> {
    if (!imageNameType(name)) return;
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.s3.bucket, Key: this.key(name) }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw this.error('refused the delete', err);
    }
  }

  async *listOlderThan(before: Date): AsyncIterable<string> {
    const pages = paginateListObjectsV2({ client: this.client }, { Bucket: this.s3.bucket, Prefix: this.s3.prefix });
    try {
      for await (const page of pages) {
        for (const object of page.Contents ?? []) {
          const name = object.Key?.slice(this.s3.prefix.length) ?? '';
          // Only our own names directly under the prefix: nothing in a deeper "folder" or put there by others.
          if (imageNameType(name) && object.LastModified && object.LastModified < before) yield name;
        }
      }
    } catch (err) {
      throw this.error('could not be listed', err);
    }
  }

  /** A URL that downloads the image straight from the bucket for ttlSeconds, without this server. */
  presignedUrl(name: string, ttlSeconds: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.s3.bucket, Key: this.key(name) }), {
      expiresIn: ttlSeconds,
    });
  }

  /** Closes the SDK's sockets. */
  close(): void {
    this.client.destroy();
  }

  private key(name: string): string {
    return `${this.s3.prefix}${name}`;
  }

  private error(what: string, err: unknown): ImageStoreError {
    const answer = serviceAnswer(err);
    const message = answer ? `${what}: ${answer}` : `could not be reached (${networkReason(err)})`;
    return new ImageStoreError(`S3 bucket "${this.s3.bucket}" ${message}`, { cause: err });
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** The service's answer (its code, HTTP status and message); null when nothing answered. */
function serviceAnswer(err: unknown): string | null {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode;
  if (!status) return null;
  const message = e.message && e.message !== e.name && e.message !== 'UnknownError' ? `: ${e.message}` : '';
  return `${e.name ?? 'error'} (HTTP ${status})${message}`;
}

function networkReason(err: unknown): string {
  const e = err as { name?: string; message?: string; code?: string; errors?: unknown[] };
  // Node gives an AggregateError without a message when every address of a name refused.
  const first = Array.isArray(e?.errors) && e.errors.length > 0 ? (e.errors[0] as { message?: string }) : undefined;
  return e?.message || first?.message || e?.code || e?.name || String(err);
}
