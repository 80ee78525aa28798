import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { EXTENSION_BY_TYPE } from './sniff.js';

const TYPE_BY_EXTENSION = Object.fromEntries(Object.entries(EXTENSION_BY_TYPE).map(([t, e]) => [e, t]));
/** 32 random bytes in base64url, then the extension: the name is the capability. */
const NAME_PATTERN = /^[A-Za-z0-9_-]{43}\.(png|jpg|webp)$/;

export interface StoredImage {
  name: string;
  contentType: string;
}

/**
 * Where generated images live. The local folder below is one; an object store (S3) is another.
 * Names are chosen by the store and unguessable: a name is the capability to read its image.
 */
export interface ImageStore {
  /** Writes an image under a new name; durable once this resolves. */
  put(data: Buffer, contentType: string): Promise<StoredImage>;
  /** Opens a stored image by name; null for names that are malformed or absent. */
  open(name: string): Promise<{ stream: Readable; size: number; contentType: string } | null>;
  exists(name: string): Promise<boolean>;
  /** Removes an image; a name that is absent (or not one of this store's) is not an error. */
  delete(name: string): Promise<void>;
  /** Resolves while the store answers and takes writes (for /readyz); rejects with the reason otherwise. */
  ping(): Promise<void>;
}

/**
 * Generated images on the local disk under DATA_DIR/images, named unguessably. Writes are
 * atomic (temp file, fsync, rename) so a crash never leaves a half image under a real name.
 */
export class LocalImageStore implements ImageStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'images');
  }

  /** Creates the folder, and removes temp files a killed process left half-written. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const name of await readdir(this.dir)) {
      if (name.endsWith('.tmp')) await rm(path.join(this.dir, name), { force: true });
    }
  }

  async put(data: Buffer, contentType: string): Promise<StoredImage> {
    const ext = EXTENSION_BY_TYPE[contentType];
    if (!ext) throw new Error(`cannot store images of type ${contentType}`);
    const name = `${randomBytes(32).toString('base64url')}.${ext}`;
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
      const dir = await open(this.dir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      // A full disk leaves no half-written temp file behind.
      await rm(temp, { force: true }).catch(() => {});
      throw err;
    }
    return { name, contentType };
  }

  /** Opens a stored image by name; null for names that are malformed or absent. */
  async open(name: string): Promise<{ stream: Readable; size: number; contentType: string } | null> {
    const match = NAME_PATTERN.exec(name);
    if (!match) return null;
    const file = path.join(this.dir, name);
    try {
      const info = await stat(file);
      if (!info.isFile()) return null;
      return { stream: createReadStream(file), size: info.size, contentType: TYPE_BY_EXTENSION[match[1]!]! };
    } catch {
      return null;
    }
  }

  async delete(name: string): Promise<void> {
    if (!NAME_PATTERN.test(name)) return;
    await rm(path.join(this.dir, name), { force: true });
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

  async exists(name: string): Promise<boolean> {
    if (!NAME_PATTERN.test(name)) return false;
    return stat(path.join(this.dir, name)).then(
      (s) => s.isFile(),
      () => false,
    );
  }
}
