import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobsDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { requestFingerprint } from '../src/jobs/idempotency.js';
import type { GenerationParams } from '../src/generation/request.js';
import { startTestServer, type TestServer } from './helpers/test-server.js';

describe('idempotency keys', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.stop());

  const graphql = (input: Record<string, unknown>, headers: Record<string, string> = {}, key = server.key) =>
    fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'api-key': key, ...headers },
      body: JSON.stringify({ query: print(Text2ImageDocument), variables: { input } }),
    }).then(
      async (r) =>
        (await r.json()) as {
          data?: { text2image: { id: string; seed: number } };
          errors?: { message: string; extensions: { code: string } }[];
        },
    );
  const rest = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    fetch(`${server.url}/sd/text2image/v1`, { method: 'POST', headers: { 'api-key': server.key, ...headers }, body: JSON.stringify(body) });
  const jobCount = async (key = server.key) => (await server.gql(JobsDocument, { first: 100 }, key)).data!.jobs.edges.length;

  it('returns the original job for a repeated GraphQL mutation (header or input field), with the same seed, making no second job', async () => {
    const before = await jobCount();
    const first = await graphql({ prompt: 'a red fox' }, { 'idempotency-key': 'retry-1' });
    const again = await graphql({ prompt: 'a red fox' }, { 'idempotency-key': 'retry-1' });
    const viaField = await graphql({ prompt: 'a red fox', idempotencyKey: 'retry-1' });
    expect(again.data!.text2image).toEqual(first.data!.text2image);
    expect(viaField.data!.text2image.id).toBe(first.data!.text2image.id);
    expect(await jobCount()).toBe(before + 1);
  });

  it('shares keys between REST and GraphQL: the same request under the same key is the same job', async () => {
    const created = await graphql({ prompt: 'a lake', width: 256, height: 256, seed: 42 }, { 'idempotency-key': 'cross-api' });
    const res = await rest({ prompt: 'a lake', width: 256, height: 256, seed: 42 }, { 'idempotency-key': 'cross-api' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { id: string }).id).toBe(created.data!.text2image.id);
  });

  it('refuses the same key with a different request (IDEMPOTENCY_KEY_REUSED, REST 422), and a malformed key', async () => {
    await graphql({ prompt: 'one thing' }, { 'idempotency-key': 'reused' });
    const other = await graphql({ prompt: 'another thing' }, { 'idempotency-key': 'reused' });
    expect(other.errors![0]!.extensions.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(other.errors![0]!.message).toMatch(/already used for a different request/);
    const viaRest = await rest({ prompt: 'another thing' }, { 'idempotency-key': 'reused' });
    expect(viaRest.status).toBe(422);
    expect(await viaRest.json()).toMatchObject({ status: 'FAILURE', code: 'IDEMPOTENCY_KEY_REUSED' });

    const bad = await graphql({ prompt: 'x', idempotencyKey: 'has spaces in it' });
    expect(bad.errors![0]!.extensions.code).toBe('BAD_USER_INPUT');
    expect(bad.errors![0]!.message).toMatch(/input\.idempotencyKey: must be 1 to 255 visible ASCII/);
    const badRest = await rest({ prompt: 'x' }, { 'idempotency-key': 'x'.repeat(300) });
    expect(badRest.status).toBe(400);
  });

  it('scopes keys to the API key: another caller with the same idempotency key gets its own job', async () => {
    const mine = await graphql({ prompt: 'shared words' }, { 'idempotency-key': 'common' });
    const theirs = await graphql({ prompt: 'shared words' }, { 'idempotency-key': 'common' }, await server.newKey('other'));
    expect(theirs.data!.text2image.id).not.toBe(mine.data!.text2image.id);
  });

  it('makes exactly one job when the same key arrives many times at once', async () => {
    const before = await jobCount();
    const results = await Promise.all(Array.from({ length: 8 }, () => graphql({ prompt: 'at once' }, { 'idempotency-key': 'race' })));
    expect(new Set(results.map((r) => r.data!.text2image.id)).size).toBe(1);
    expect(await jobCount()).toBe(before + 1);
  });

  it('fingerprints validated parameters: defaults equal absent fields, and a random seed matches any', () => {
    const params = { modelId: 'sd1.5', prompt: 'p', seed: 7 } as GenerationParams;
    expect(requestFingerprint('text2image', params, false)).toBe(requestFingerprint('text2image', { ...params, seed: 9 }, false));
    expect(requestFingerprint('text2image', params, true)).not.toBe(requestFingerprint('text2image', { ...params, seed: 9 }, true));
    expect(requestFingerprint('text2image', params, true)).not.toBe(requestFingerprint('image2image', params, true));
  });
});
