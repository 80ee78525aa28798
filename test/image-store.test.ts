import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { DeleteBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalImageStore, type ImageStore } from '../src/images/image-store.js';
import { S3ImageStore, type S3Location } from '../src/images/s3-image-store.js';
import type { Job, JobPatch } from '../src/jobs/job.js';
import type { JobStore } from '../src/jobs/job-store.js';
import { TestS3Server } from './fixtures/s3-server.js';

const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const png = (size = 1000) => Buffer.concat([PNG_MAGIC, randomBytes(size - PNG_MAGIC.length)]);

async function readAll(stream: Readable): Promise<{ bytes: Buffer; chunks: number }> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { bytes: Buffer.concat(chunks), chunks: chunks.length };
}

async function names(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const name of iterable) out.push(name);
  return out;
}

const s3 = new TestS3Server(['images', 'other']);
const folders: string[] = [];
const location = (overrides: Partial<S3Location> = {}): S3Location => ({
  bucket: 'images',
  prefix: 'contract/',
  region: 'us-east-1',
  endpoint: s3.endpoint,
  forcePathStyle: true,
  credentials: { accessKeyId: TestS3Server.accessKeyId, secretAccessKey: TestS3Server.secretAccessKey },
  ...overrides,
});

beforeAll(async () => {
  await s3.start();
});
afterAll(async () => {
  await s3.destroy();
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
});

const stores: [string, () => Promise<ImageStore>][] = [
  [
    'the local folder store',
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'sd-api-images-'));
      folders.push(dir);
      const store = new LocalImageStore({ dir: path.join(dir, 'images') });
      await store.init();
      return store;
    },
  ],
  [
    'the S3 store',
    async () => {
      const store = new S3ImageStore(location({ prefix: `contract-${randomBytes(4).toString('hex')}/` }));
      await store.init();
      return store;
    },
  ],
];

describe.each(stores)('the image store contract: %s', (_, make) => {
  let store: ImageStore;
  beforeAll(async () => {
    store = await make();
  });
  afterAll(() => store.close());

  it('puts under a new unguessable name per image, and opens the same bytes with their type and size', async () => {
    const cases = [
      ['image/png', 'png'],
      ['image/jpeg', 'jpg'],
      ['image/webp', 'webp'],
    ] as const;
    const seen = new Set<string>();
    for (const [type, ext] of cases) {
      const data = png(2048);
      const stored = await store.put(data, type);
      expect(stored.contentType).toBe(type);
      expect(stored.name).toMatch(new RegExp(`^[A-Za-z0-9_-]{43}\\.${ext}$`));
      seen.add(stored.name);
      const opened = await store.open(stored.name);
      expect(opened).not.toBeNull();
      expect(opened!.contentType).toBe(type);
      expect(opened!.size).toBe(data.length);
      expect((await readAll(opened!.stream)).bytes.equals(data)).toBe(true);
      expect(await store.stat(stored.name)).toMatchObject({ size: data.length, contentType: type });
      expect(await store.exists(stored.name)).toBe(true);
    }
    expect(seen.size).toBe(3);
  });

  it('refuses types it does not keep', async () => {
    await expect(store.put(Buffer.from('GIF89a'), 'image/gif')).rejects.toThrow(/cannot store images of type image\/gif/);
  });

  it('streams a large image in chunks rather than one buffer', async () => {
    const data = png(3 * 1024 * 1024);
    const { name } = await store.put(data, 'image/png');
    const opened = (await store.open(name))!;
    expect(opened.size).toBe(data.length);
    const { bytes, chunks } = await readAll(opened.stream);
    expect(bytes.equals(data)).toBe(true);
    expect(chunks).toBeGreaterThan(1);
  });

  it('answers null (never throws) for names that are absent or not its own', async () => {
    for (const name of ['', 'x.png', '../../etc/passwd', `${'A'.repeat(43)}.png`, `${'A'.repeat(43)}.gif`, `a/${'A'.repeat(43)}.png`]) {
      expect(await store.open(name)).toBeNull();
      expect(await store.stat(name)).toBeNull();
      expect(await store.exists(name)).toBe(false);
    }
  });

  it('deletes an image; deleting it again, or a name never stored, is no error', async () => {
    const { name } = await store.put(png(), 'image/png');
    await store.delete(name);
    expect(await store.open(name)).toBeNull();
    expect(await store.exists(name)).toBe(false);
    await store.delete(name);
    await store.delete(`${'B'.repeat(43)}.png`);
    await store.delete('../not-ours');
  });

  it('lists the names stored before a time', async () => {
    const { name } = await store.put(png(), 'image/png');
    const later = new Date(Date.now() + 60_000);
    const earlier = new Date(Date.now() - 60_000);
    expect(await names(store.listOlderThan(later))).toContain(name);
    expect(await names(store.listOlderThan(earlier))).not.toContain(name);
  });

  it('answers a readiness check', async () => {
    await expect(store.ping()).resolves.toBeUndefined();
  });
});

describe('the local folder store', () => {
  it('lists by modification time and skips files that are not its images', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sd-api-images-'));
    folders.push(dir);
    const store = new LocalImageStore({ dir });
    await store.init();
    const old = await store.put(png(), 'image/png');
    const recent = await store.put(png(), 'image/png');
    const past = new Date(Date.now() - 3 * 86_400_000);
    utimesSync(path.join(dir, old.name), past, past);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path.join(dir, 'notes.txt'), 'not an image');
    utimesSync(path.join(dir, 'notes.txt'), past, past);
    const listed = await names(store.listOlderThan(new Date(Date.now() - 86_400_000)));
    expect(listed).toEqual([old.name]);
    expect(listed).not.toContain(recent.name);
    expect(store.location).toBe(`file://${dir}`);
  });
});

describe('the S3 store', () => {
  it('keeps each image as one object under the prefix, with its content type and immutable caching', async () => {
    const store = new S3ImageStore(location({ prefix: 'a/b/' }));
    await store.init();
    const data = png();
    const { name } = await store.put(data, 'image/webp');
    const client = s3.client();
    const head = await client.send(new HeadObjectCommand({ Bucket: 'images', Key: `a/b/${name}` }));
    expect(head.ContentType).toBe('image/webp');
    expect(head.ContentLength).toBe(data.length);
    expect(head.CacheControl).toBe('public, max-age=31536000, immutable');
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'images', Prefix: 'a/b/' }));
    expect(listed.Contents?.map((c) => c.Key)).toEqual([`a/b/${name}`]);
    // An ETag comes with a download.
    expect((await store.stat(name))!.etag).toMatch(/^".+"$/);
    client.destroy();
    store.close();
  });

  it('ignores objects outside its prefix or not named as it names images when listing', async () => {
    const store = new S3ImageStore(location({ prefix: 'list/' }));
    const deeper = new S3ImageStore(location({ prefix: 'list/deeper/' }));
    const mine = await store.put(png(), 'image/png');
    await deeper.put(png(), 'image/png');
    const client = s3.client();
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    await client.send(new PutObjectCommand({ Bucket: 'images', Key: 'list/readme.txt', Body: 'hello' }));
    expect(await names(store.listOlderThan(new Date(Date.now() + 60_000)))).toEqual([mine.name]);
    client.destroy();
    store.close();
    deeper.close();
  });

  it('gives presigned URLs that download without this server and stop working when they expire', async () => {
    const store = new S3ImageStore(location());
    const data = png();
    const { name } = await store.put(data, 'image/png');
    // A URL valid for a minute downloads; one valid for a second is refused once it has passed
    // (a one-second URL alone could expire before a loaded machine fetches it: seen in CI).
    const url = await store.presignedUrl(name, 60);
    const brief = await store.presignedUrl(name, 1);
    expect(url.startsWith(`${s3.endpoint}/images/contract/${name}?`)).toBe(true);
    expect(url).toMatch(/X-Amz-Expires=60\b/);
    expect(brief).toMatch(/X-Amz-Expires=1\b/);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await res.arrayBuffer()).equals(data)).toBe(true);
    // A key the server does not know is refused (the test server checks no more of a signature than that).
    const stranger = url.replace(/X-Amz-Credential=S3RVER/, 'X-Amz-Credential=NOBODY');
    expect((await fetch(stranger)).status).toBe(403);
    await new Promise((r) => setTimeout(r, 2_100));
    expect((await fetch(brief)).status).toBe(403);
    expect((await fetch(url)).status).toBe(200);
    store.close();
  });

  it('names the bucket and the reason when it is unreachable, missing or refuses', async () => {
    const down = new S3ImageStore(location({ endpoint: 'http://127.0.0.1:9' }));
    await expect(down.put(png(), 'image/png')).rejects.toThrow(/^S3 bucket "images" could not be reached \(.*ECONNREFUSED/);
    await expect(down.init()).rejects.toThrow(/^S3 bucket "images" could not be reached/);
    // Reads that fail are errors, not "absent": a download must not say 404 for an image that may exist.
    await expect(down.open(`${'A'.repeat(43)}.png`)).rejects.toThrow(/could not be reached/);
    down.close();

    const missing = new S3ImageStore(location({ bucket: 'no-such-bucket' }));
    await expect(missing.init()).rejects.toThrow('S3 bucket "no-such-bucket" does not exist');
    await expect(missing.put(png(), 'image/png')).rejects.toThrow(
      /^S3 bucket "no-such-bucket" refused the write: NoSuchBucket \(HTTP 404\)/,
    );
    missing.close();

    const wrongKey = new S3ImageStore(location({ credentials: { accessKeyId: 'NOBODY', secretAccessKey: 'wrong' } }));
    await expect(wrongKey.put(png(), 'image/png')).rejects.toThrow(
      /^S3 bucket "images" refused the write: InvalidAccessKeyId \(HTTP 403\): The AWS Access Key Id you provided does not exist/,
    );
    wrongKey.close();
  });

  it('fails writes once its bucket is gone', async () => {
    const store = new S3ImageStore(location({ bucket: 'other', prefix: '' }));
    await store.init();
    const client = s3.client();
    await client.send(new DeleteBucketCommand({ Bucket: 'other' }));
    await expect(store.put(png(), 'image/png')).rejects.toThrow(/refused the write: NoSuchBucket/);
    await expect(client.send(new GetObjectCommand({ Bucket: 'other', Key: 'x' }))).rejects.toThrow();
    client.destroy();
    store.close();
  });
});

describe('the job updater with a store that fails part-way', () => {
  it('fails the job naming the store, and deletes the samples it had already stored', async () => {
    const { JobUpdater } = await import('../src/jobs/job-updater.js');
    const { InProcessJobEvents } = await import('../src/jobs/job-events.js');
    const pino = (await import('pino')).default;
    const store = new S3ImageStore(location({ prefix: 'partial/' }));
    let puts = 0;
    const flaky: ImageStore = Object.assign(Object.create(store) as S3ImageStore, {
      put: (data: Buffer, type: string) =>
        ++puts === 2 ? Promise.reject(new Error('S3 bucket "images" could not be reached (test)')) : store.put(data, type),
    });
    const job = {
      id: 'j1',
      status: 'PROCESSING',
      startedAt: new Date(),
      progress: null,
      images: [],
      params: { numInferenceSteps: 2 },
    } as unknown as Job;
    let saved: Job = job;
    const jobs = {
      update: (_: string, patch: JobPatch) => Promise.resolve((saved = { ...saved, ...patch })),
      get: () => Promise.resolve(saved),
    } as unknown as JobStore;
    const updater = new JobUpdater({ store: jobs, events: new InProcessJobEvents(), images: flaky, logger: pino({ level: 'silent' }) });
    const image = { data: png(), contentType: 'image/png', nsfw: null };
    const after = await updater.applyEngineStatus(job, { state: 'SUCCESS', images: [image, image, image] });
    expect(after.status).toBe('FAILURE');
    expect(after.error).toEqual({
      code: 'IMAGE_STORE_FAILED',
      message: 'the results could not be written to the image store: S3 bucket "images" could not be reached (test)',
    });
    expect(puts).toBe(2);
    expect(await names(store.listOlderThan(new Date(Date.now() + 60_000)))).toEqual([]);
    store.close();
  });
});
