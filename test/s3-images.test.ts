import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStatusDocument, Text2ImageDocument, type JobStateFragment } from '../src/client/generated/graphql.js';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { TestS3Server } from './fixtures/s3-server.js';
import { collect, LOCAL_ENGINE, startTestServer, type TestServer } from './helpers/test-server.js';

/** Jobs whose images go to an S3 bucket (an S3-compatible test server, see fixtures/s3-server.ts). */

const SMALL = { prompt: 'a lighthouse at dusk', width: 64, height: 64, numInferenceSteps: 2 };

async function runJob(server: TestServer, input: Record<string, unknown> = {}): Promise<JobStateFragment> {
  const created = await server.gql(Text2ImageDocument, { input: { ...SMALL, ...input } });
  expect(created.errors).toBeUndefined();
  const { values, errors } = await collect(server.ws(), JobStatusDocument, { id: created.data!.text2image.id }, 30_000);
  expect(errors).toEqual([]);
  return values.at(-1)!.jobStatus;
}

async function restStatus(server: TestServer, id: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${server.url}/sd/text2image/v1/status/${id}`, { headers: { 'API-Key': server.key } });
  return (await res.json()) as Record<string, unknown>;
}

async function download(url: string): Promise<{ res: Response; bytes: Buffer }> {
  const res = await fetch(url);
  return { res, bytes: Buffer.from(await res.arrayBuffer()) };
}

async function keys(s3: TestS3Server, prefix: string): Promise<string[]> {
  const client = s3.client();
  try {
    const out = await client.send(new ListObjectsV2Command({ Bucket: 'images', Prefix: prefix }));
    return (out.Contents ?? []).map((c) => c.Key!);
  } finally {
    client.destroy();
  }
}

describe('the S3 image store, through the server', () => {
  const s3 = new TestS3Server(['images']);
  let server: TestServer;
  let replica: TestServer;

  beforeAll(async () => {
    await s3.start();
    // The local engine on the tiny models, its images in s3://images/jobs/.
    server = await startTestServer({ env: { ...LOCAL_ENGINE, ...s3.env('s3://images/jobs/a') } });
    // Another replica on the same bucket, with its own DATA_DIR and engine: it never ran the job.
    replica = await startTestServer({ env: s3.env('s3://images/jobs/a/') });
  }, 120_000);
  afterAll(async () => {
    await replica?.stop();
    await server?.stop();
    await s3.destroy();
  });

  it('stores a job’s images in the bucket and serves them from any replica at the download URLs', async () => {
    const done = await runJob(server, { samples: 2 });
    expect(done.status).toBe('SUCCESS');
    expect(done.downloadUrls).toHaveLength(2);
    const names = done.downloadUrls.map((u) => u.slice(`${server.url}/images/`.length));
    expect(done.downloadUrls.every((u) => u.startsWith(`${server.url}/images/`))).toBe(true);
    expect(done.images.map((i) => i.url)).toEqual(done.downloadUrls);
    // One object per image under the prefix; nothing in the local folder.
    expect((await keys(s3, 'jobs/a/')).sort()).toEqual(names.map((n) => `jobs/a/${n}`).sort());
    expect(existsSync(path.join(server.dataDir, 'images'))).toBe(false);

    for (const name of names) {
      const a = await download(`${server.url}/images/${name}`);
      const b = await download(`${replica.url}/images/${name}`);
      for (const { res, bytes } of [a, b]) {
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toBe('image/png');
        expect(res.headers.get('content-length')).toBe(String(bytes.length));
        expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
        expect(res.headers.get('x-content-type-options')).toBe('nosniff');
        expect(res.headers.get('etag')).toMatch(/^".+"$/);
        expect(bytes.subarray(1, 4).toString('ascii')).toBe('PNG');
      }
      expect(a.bytes.equals(b.bytes)).toBe(true);
      const head = await fetch(`${replica.url}/images/${name}`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-length')).toBe(String(a.bytes.length));
    }

    // The contract's REST status gives the same URLs.
    const rest = await restStatus(server, done.id);
    expect(rest).toMatchObject({ status: 'SUCCESS', download_urls: done.downloadUrls });
  });

  it('answers 404 for a name the bucket does not hold, and for names that are not ours', async () => {
    for (const name of [`${'A'.repeat(43)}.png`, 'x.png', '..%2F..%2Fetc%2Fpasswd']) {
      const res = await fetch(`${replica.url}/images/${name}`);
      expect(res.status).toBe(404);
      expect(await res.text()).toBe('image not found');
    }
  });
});

describe('presigned download URLs (IMAGE_URLS=presigned)', () => {
  const s3 = new TestS3Server(['images']);
  let server: TestServer;

  beforeAll(async () => {
    await s3.start();
    server = await startTestServer({
      env: { ...LOCAL_ENGINE, ...s3.env('s3://images/signed'), IMAGE_URLS: 'presigned', IMAGE_URL_TTL: '10m' },
    });
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await s3.destroy();
  });

  it('gives URLs straight to the bucket that download the images without the server, on every surface', async () => {
    const done = await runJob(server, { samples: 2 });
    expect(done.status).toBe('SUCCESS');
    expect(done.downloadUrls).toHaveLength(2);
    const stored = await keys(s3, 'signed/');
    expect(stored).toHaveLength(2);
    for (const [i, url] of done.downloadUrls.entries()) {
      const parsed = new URL(url);
      expect(`${parsed.origin}${parsed.pathname}`).toBe(`${s3.endpoint}/images/${stored.find((k) => url.includes(k))}`);
      expect(parsed.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
      expect(parsed.searchParams.get('X-Amz-Expires')).toBe('600');
      expect(parsed.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
      expect(done.images[i]!.url).toMatch(new RegExp(`^${s3.endpoint}/images/signed/`));
      const { res, bytes } = await download(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      expect(bytes.subarray(1, 4).toString('ascii')).toBe('PNG');
      // The server still serves the same image itself, for clients that hold an older URL.
      const name = parsed.pathname.split('/').at(-1)!;
      const proxied = await download(`${server.url}/images/${name}`);
      expect(proxied.res.status).toBe(200);
      expect(proxied.bytes.equals(bytes)).toBe(true);
    }

    // The contract's REST status: the same shape, presigned URLs in download_urls.
    const rest = await restStatus(server, done.id);
    expect(Object.keys(rest).sort()).toEqual(['download_urls', 'id', 'nsfw', 'seed', 'status']);
    const urls = rest.download_urls as string[];
    expect(urls).toHaveLength(2);
    for (const url of urls) {
      expect(url.startsWith(`${s3.endpoint}/images/signed/`)).toBe(true);
      expect((await fetch(url)).status).toBe(200);
    }
  });
});

describe('an S3 store that fails', () => {
  it('fails the job clearly when S3 is down at upload time, answers 503 for downloads meanwhile, and recovers when it is back', async () => {
    const s3 = new TestS3Server(['images']);
    await s3.start();
    const server = await startTestServer({ env: s3.env('s3://images/down') });
    try {
      const before = await runJob(server, { samples: 1 });
      expect(before.status).toBe('SUCCESS');
      const name = before.downloadUrls[0]!.split('/').at(-1)!;

      await s3.stop();
      const failed = await runJob(server, { samples: 1 });
      expect(failed.status).toBe('FAILURE');
      expect(failed.downloadUrls).toEqual([]);
      expect(failed.error!.code).toBe('IMAGE_STORE_FAILED');
      expect(failed.error!.message).toMatch(
        /^the results could not be written to the image store: S3 bucket "images" could not be reached \(connect ECONNREFUSED 127\.0\.0\.1:\d+\)$/,
      );
      // An image that may well exist is not "not found" while the store cannot say.
      const meanwhile = await fetch(`${server.url}/images/${name}`);
      expect(meanwhile.status).toBe(503);
      expect(meanwhile.headers.get('retry-after')).toBe('5');
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);

      await s3.start();
      const after = await runJob(server, { samples: 1 });
      expect(after.status).toBe('SUCCESS');
      expect((await fetch(`${server.url}/images/${name}`)).status).toBe(200);
    } finally {
      await server.stop();
      await s3.destroy();
    }
  });

  it('fails the job when the bucket refuses the write', async () => {
    const s3 = new TestS3Server(['images']);
    await s3.start();
    const server = await startTestServer({ env: s3.env('s3://images/') });
    try {
      const client = s3.client();
      const { DeleteBucketCommand } = await import('@aws-sdk/client-s3');
      await client.send(new DeleteBucketCommand({ Bucket: 'images' }));
      client.destroy();
      const failed = await runJob(server, { samples: 1 });
      expect(failed.status).toBe('FAILURE');
      expect(failed.error!.code).toBe('IMAGE_STORE_FAILED');
      expect(failed.error!.message).toMatch(
        /^the results could not be written to the image store: S3 bucket "images" refused the write: NoSuchBucket \(HTTP 404\)/,
      );
    } finally {
      await server.stop();
      await s3.destroy();
    }
  });

  it('stops the server at start when the bucket is missing or S3 cannot be reached', async () => {
    const s3 = new TestS3Server(['images']);
    await s3.start();
    const dataDir = mkdtempSync(path.join(tmpdir(), 'sd-api-test-'));
    try {
      const base = { DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', ENGINE: 'imagepipeline' };
      await expect(buildApp(loadConfig({ ...base, ...s3.env('s3://missing-bucket/x') }))).rejects.toThrow(
        'the image store s3://missing-bucket/x/ cannot be used: S3 bucket "missing-bucket" does not exist',
      );
      await s3.stop();
      await expect(buildApp(loadConfig({ ...base, ...s3.env() }))).rejects.toThrow(
        /^the image store s3:\/\/images\/ cannot be used: S3 bucket "images" could not be reached \(connect ECONNREFUSED/,
      );
    } finally {
      await s3.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
