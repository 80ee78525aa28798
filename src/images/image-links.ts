import type { ImageStore } from './image-store.js';

/** Where this server serves stored images (http/image-routes.ts). */
export const IMAGES_PATH = '/images/';

/** IMAGE_URLS: through this server (default), or presigned URLs straight to the bucket. */
export type ImageUrlMode = { kind: 'proxied' } | { kind: 'presigned'; ttlSeconds: number };

/**
 * Builds a job's download URLs. Proxied: this server's /images/<name>, which any replica
 * serves from the shared store and which never expire. Presigned: GET URLs signed for the
 * bucket, valid IMAGE_URL_TTL, so the bytes never pass through an API replica.
 */
export class ImageLinks {
  constructor(
    private readonly store: ImageStore,
    readonly mode: ImageUrlMode,
  ) {
    if (mode.kind === 'presigned' && !store.presignedUrl) {
      throw new Error(`presigned image URLs need an S3 image store, not ${store.location}`);
    }
  }

  /** This server's URL for an image; webhooks carry these, as their deliveries may be retried for hours. */
  proxied(name: string, baseUrl: string): string {
    return `${baseUrl}${IMAGES_PATH}${name}`;
  }

  /** The download URL clients get for an image. */
  url(name: string, baseUrl: string): Promise<string> {
    if (this.mode.kind === 'presigned') return this.store.presignedUrl!(name, this.mode.ttlSeconds);
    return Promise.resolve(this.proxied(name, baseUrl));
  }

  urls(images: readonly { name: string }[], baseUrl: string): Promise<string[]> {
    return Promise.all(images.map((i) => this.url(i.name, baseUrl)));
  }
}
