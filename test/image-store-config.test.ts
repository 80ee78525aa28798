import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

function problems(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.join('\n');
  }
  throw new Error('the configuration was accepted');
}

describe('IMAGE_STORE_URL and IMAGE_URLS', () => {
  it('default to the folder DATA_DIR/images, served through this server', () => {
    const config = loadConfig({ DATA_DIR: '/srv/sd' });
    expect(config.imageStore).toEqual({ kind: 'file', dir: '/srv/sd/images' });
    expect(config.imageUrls).toEqual({ kind: 'proxied' });
    expect(loadConfig({}).imageStore).toEqual({ kind: 'file', dir: path.resolve('data/images') });
  });

  it('take a folder as a file: URL', () => {
    expect(loadConfig({ IMAGE_STORE_URL: 'file:///var/lib/sd-images/' }).imageStore).toEqual({ kind: 'file', dir: '/var/lib/sd-images' });
    expect(loadConfig({ IMAGE_STORE_URL: 'file://localhost/a%20b' }).imageStore).toEqual({ kind: 'file', dir: '/a b' });
  });

  it('take a bucket and key prefix as an s3: URL, with the AWS SDK variables', () => {
    const config = loadConfig({
      IMAGE_STORE_URL: 's3://sd-images/prod/v1',
      AWS_REGION: 'eu-west-3',
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'secret',
      AWS_SESSION_TOKEN: 'token',
    });
    expect(config.imageStore).toEqual({
      kind: 's3',
      bucket: 'sd-images',
      prefix: 'prod/v1/',
      region: 'eu-west-3',
      endpoint: undefined,
      forcePathStyle: false,
      credentials: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret', sessionToken: 'token' },
    });
    // No prefix, no credentials: the SDK's own chain (profiles, web identity, instance roles) finds them.
    expect(loadConfig({ IMAGE_STORE_URL: 's3://sd-images' }).imageStore).toMatchObject({
      prefix: '',
      credentials: undefined,
      region: undefined,
    });
    expect(loadConfig({ IMAGE_STORE_URL: 's3://sd-images/' }).imageStore).toMatchObject({ prefix: '' });
  });

  it('use path-style addressing with a custom endpoint (S3-compatible servers) unless told otherwise', () => {
    const compatible = loadConfig({ IMAGE_STORE_URL: 's3://b1c/x', AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9000/' });
    expect(compatible.imageStore).toMatchObject({ endpoint: 'http://127.0.0.1:9000', forcePathStyle: true });
    // The SDK's general endpoint variable counts too; the S3 one wins.
    expect(loadConfig({ IMAGE_STORE_URL: 's3://b1c', AWS_ENDPOINT_URL: 'http://minio:9000' }).imageStore).toMatchObject({
      endpoint: 'http://minio:9000',
    });
    expect(
      loadConfig({ IMAGE_STORE_URL: 's3://b1c', AWS_ENDPOINT_URL: 'http://a:1', AWS_ENDPOINT_URL_S3: 'http://b:2' }).imageStore,
    ).toMatchObject({ endpoint: 'http://b:2' });
    const virtualHosts = loadConfig({
      IMAGE_STORE_URL: 's3://b1c',
      AWS_ENDPOINT_URL_S3: 'https://s3.example.com',
      S3_FORCE_PATH_STYLE: 'false',
    });
    expect(virtualHosts.imageStore).toMatchObject({ forcePathStyle: false });
    expect(loadConfig({ IMAGE_STORE_URL: 's3://b1c', S3_FORCE_PATH_STYLE: 'true' }).imageStore).toMatchObject({ forcePathStyle: true });
  });

  it('give presigned URLs for an S3 store, valid an hour unless IMAGE_URL_TTL says otherwise', () => {
    expect(loadConfig({ IMAGE_STORE_URL: 's3://b1c', IMAGE_URLS: 'presigned' }).imageUrls).toEqual({ kind: 'presigned', ttlSeconds: 3600 });
    for (const [ttl, seconds] of [
      ['900', 900],
      ['90s', 90],
      ['15m', 900],
      ['2h', 7200],
      ['7d', 604_800],
      ['1w', 604_800],
      ['5000ms', 5],
    ] as const) {
      expect(loadConfig({ IMAGE_STORE_URL: 's3://b1c', IMAGE_URLS: 'presigned', IMAGE_URL_TTL: ttl }).imageUrls).toEqual({
        kind: 'presigned',
        ttlSeconds: seconds,
      });
    }
  });

  it('refuse URLs that name no store, with what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['/var/images', /must be file:\/\/\/absolute\/path or s3:\/\/bucket\/prefix/],
      ['http://bucket.s3.amazonaws.com/x', /must be file:\/\/\/absolute\/path or s3:\/\/bucket\/prefix/],
      ['file://nas/images', /names a folder on this machine, not on "nas"/],
      ['file:///images?x=1', /takes no query or fragment/],
      ['s3://', /names no bucket/],
      ['s3:///prefix', /names no bucket/],
      ['s3://Images/x', /"Images" is not a valid bucket name/],
      ['s3://ab', /"ab" is not a valid bucket name/],
      ['s3://my_bucket', /"my_bucket" is not a valid bucket name/],
      ['s3://a..b', /"a..b" is not a valid bucket name/],
      ['s3://AKIA:secret@bucket/x', /credentials do not belong in IMAGE_STORE_URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/],
      ['s3://bucket:9000/x', /names a bucket, not a server: set the endpoint in AWS_ENDPOINT_URL_S3/],
      ['s3://bucket/x?versionId=1', /takes no query or fragment/],
      ['s3://bucket/a/../b', /may not contain "\." or "\.\." segments/],
      ['s3://bucket/a//b', /may not contain empty segments/],
    ];
    for (const [url, message] of cases) {
      const report = problems({ IMAGE_STORE_URL: url });
      expect(report, url).toMatch(/^IMAGE_STORE_URL: /);
      expect(report, url).toMatch(message);
    }
  });

  it('never shows credentials a refused URL carried', () => {
    const report = problems({ IMAGE_STORE_URL: 's3://AKIA:hunter2@bucket/x' });
    expect(report).toContain('(got "s3://…@bucket/x")');
    expect(report).not.toContain('hunter2');
  });

  it('refuse presigned URLs for the file store, bad lifetimes and half a key pair', () => {
    expect(problems({ IMAGE_URLS: 'presigned' })).toMatch(/^IMAGE_URLS: presigned URLs need an s3:\/\/ IMAGE_STORE_URL/);
    expect(problems({ IMAGE_STORE_URL: 'file:///x', IMAGE_URLS: 'presigned' })).toMatch(/^IMAGE_URLS: presigned URLs need an s3:\/\//);
    expect(problems({ IMAGE_URLS: 'public' })).toMatch(/^IMAGE_URLS: .*"public"/);
    for (const ttl of ['forever', '1.5h', '-1', '1y']) {
      expect(problems({ IMAGE_STORE_URL: 's3://b1c', IMAGE_URL_TTL: ttl }), ttl).toMatch(
        /^IMAGE_URL_TTL: must be a duration such as 3600, 90s/,
      );
    }
    expect(problems({ IMAGE_STORE_URL: 's3://b1c', IMAGE_URL_TTL: '1500ms' })).toMatch(/^IMAGE_URL_TTL: must be a whole number of seconds/);
    for (const ttl of ['0', '0s', '8d', '2w', '604801']) {
      expect(problems({ IMAGE_STORE_URL: 's3://b1c', IMAGE_URL_TTL: ttl }), ttl).toMatch(
        /^IMAGE_URL_TTL: must be between 1 second and 7 days/,
      );
    }
    const half = problems({ IMAGE_STORE_URL: 's3://b1c', AWS_SECRET_ACCESS_KEY: 'very-secret-value' });
    expect(half).toMatch(/^AWS_ACCESS_KEY_ID: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together/);
    expect(half).not.toContain('very-secret-value');
    expect(problems({ IMAGE_STORE_URL: 's3://b1c', AWS_ENDPOINT_URL_S3: 'minio:9000' })).toMatch(
      /^AWS_ENDPOINT_URL_S3: must be an http\(s\) URL/,
    );
  });

  it('leave the AWS variables alone when the store is a folder', () => {
    // Set for other tools on the same machine: not this server's business.
    expect(loadConfig({ AWS_SECRET_ACCESS_KEY: 'x', AWS_REGION: 'eu-west-1' }).imageStore.kind).toBe('file');
  });
});
