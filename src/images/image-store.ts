import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable } from 'node:stream';
import { EXTENSION_BY_TYPE } from './sniff.js';

const TYPE_BY_EXTENSION = Object.fromEntries(Object.entries(EXTENSION_BY_TYPE).map(([t, e]) => [e, t]));
/** 32 random bytes in base64url, then the extension: the name is the capability. */
const NAME_PATTERN = /^[A-Za-z0-9_-]{43}\.(png|jpg|webp)$/;

export interface StoredImage {
  name: string;
  contentType: string;
}

/** What a download needs to know before the bytes. */
export interface ImageInfo {
  size: number;
  contentType: string;
  /** The store's entity tag, quoted as HTTP sends it, when it has one. */
  etag?: string;
}

export interface OpenedImage extends ImageInfo {
  /** The bytes, streamed from the store; destroy it to give the connection back early. */
  stream: Readable;
}

/**
 * Where generated images live: a local folder or an S3 bucket. Names come from the store
 * (newImageName) and are unguessable; stored bytes never change under a name.
 */
export interface ImageStore {
  /** For logs and error messages: file:///… or s3://bucket/prefix (no secrets). */
  readonly location: string;
  /** Prepares the store at start (creates the folder, checks the bucket); throws if it cannot be used. */
  init(): Promise<void>;
  /** Resolves while the store answers (for /readyz: a folder that takes writes, a bucket that answers); rejects with the reason otherwise. */
  ping(): Promise<void>;
  /** Stores the bytes durably under a new name; resolves once they are safe. */
  put(data: Buffer, contentType: string): Promise<StoredImage>;
  /** Opens a stored image by name for streaming; null for names that are malformed or absent. */
  open(name: string): Promise<OpenedImage | null>;
  /** Size and type without the bytes (HEAD); null for names that are malformed or absent. */
  stat(name: string): Promise<ImageInfo | null>;
  exists(name: string): Promise<boolean>;
  /** Removes an image; a name that is absent (or malformed) is not an error. */
  delete(name: string): Promise<void>;
  /** Names of the images stored before a time, as the store records it (for retention sweeps). */
  listOlderThan(before: Date): AsyncIterable<string>;
  /** A URL that downloads the image straight from the store, valid for ttlSeconds; only stores that can sign have it. */
  presignedUrl?(name: string, ttlSeconds: number): Promise<string>;
  /** Releases connections (the store is not used after). */
  close(): void;
}

/** A new unguessable name for an image of this type; throws for types the store does not keep. */
export function newImageName(contentType: string): string {
  const ext = EXTENSION_BY_TYPE[contentType];
  if (!ext) throw new Error(`cannot store images of type ${contentType}`);
  return `${randomBytes(32).toString('base64url')}.${ext}`;
}

/** The content type a stored name implies; null for names the store never makes. */
export function imageNameType(name: string): string | null {
  const match = NAME_PATTERN.exec(name);
  return match ? TYPE_BY_EXTENSION[match[1]!]! : null;
}

/**
 * Generated images on the local disk (by default DATA_DIR/images), named unguessably. Writes
 * are atomic (temp file, fsync, rename) so a crash never leaves a half image under a real name.
 */
export class LocalImageStore implements ImageStore {
  readonly location: string;
  readonly dir: string;

  /** dir: the folder itself (IMAGE_STORE_URL's path; by default DATA_DIR/images). */
  constructor({ dir }: { dir: string }) {
    this.dir = dir;
    this.location = pathToFileURL(dir).href;
  }

  /** Creates the folder, and removes temp files a killed process left half-written. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir)) {
      if (name.endsWith('.tmp')) await rm(path.join(this.dir, name), { force: true });
    }
  }

  /** Writes and removes a small file: the folder exists and takes writes (init() clears a left-over probe). */
  async ping(): Promise<void> {
    const probe = path.join(this.dir, `.ping-${randomBytes(8).toString('hex')}.tmp`);
    try {
      await writeFile(probe, 'ok');
    } finally {
      await rm(probe, { force: true }).catch(() => {});
    }
  }

  async put(data: Buffer, contentType: string): Promise<StoredImage> {
    const name = newImageName(contentType);
    const final = path.join(this.dir, name);
    const temp = `${final}.tmp`;
    try {
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, final);
      // The rename is durable only once the directory is synced: until then a power cut could
      // lose the name while the job that points at it says SUCCESS.
      await this.syncDir();
    } catch (err) {
      // A full disk leaves no half-written temp file behind.
      await rm(temp, { force: true }).catch(() => {});
      throw err;
    }
    return { name, contentType };
  }

  async open(name: string): Promise<OpenedImage | null> {
    const info = await this.stat(name);
    return info ? { ...info, stream: createReadStream(path.join(this.dir, name)) } : null;
  }

  async stat(name: string): Promise<ImageInfo | null> {
    const contentType = imageNameType(name);
    if (!contentType) return null;
    try {
      const info = await stat(path.join(this.dir, name));
      return info.isFile() ? { size: info.size, contentType } : null;
    } catch {
      return null;
    }
  }

  async exists(name: string): Promise<boolean> {
    return (await this.stat(name)) !== null;
  }

  async delete(name: string): Promise<void> {
    if (!imageNameType(name)) return;
    await rm(path.join(this.dir, name), { force: true });
  }

  async *listOlderThan(before: Date): AsyncIterable<string> {
    for (const name of await readdir(this.dir)) {
      if (!imageNameType(name)) continue;
      const info = await stat(path.join(this.dir, name)).catch(() => null);
      if (info?.isFile() && info.mtime < before) yield name;
    }
  }

  close(): void {}

  private async syncDir(): Promise<void> {
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
