import { afterEach, describe, expect, it } from 'vitest';
import { CancelJobDocument, CreateText2ImageDocument } from '../src/client/generated/graphql.js';
import { print } from 'graphql';
import { TokenBuckets } from '../src/limits/token-buckets.js';
import { startTestServer, type TestServer } from './helpers/test-server.js';

describe('token buckets', () => {
  it('grants a burst, then one token per refill interval, per key', () => {
    let now = 0;
    const buckets = new TokenBuckets(3, 1, () => now);
    expect([buckets.take('a'), buckets.take('a'), buckets.take('a')]).toEqual([0, 0, 0]);
    expect(buckets.take('a')).toBe(1000);
    expect(buckets.take('b')).toBe(0); // another key has its own bucket
    now = 500;
    expect(buckets.take('a')).toBe(500);
    now = 1000;
    expect(buckets.take('a')).toBe(0);
    now = 60_000;
    expect([0, 1, 2, 3].map(() => buckets.take('a'))).toEqual([0, 0, 0, 1000]); // refills only up to the burst
  });
});

describe('per-key limits on new jobs', () => {
  let server: TestServer;
  afterEach(() => server?.stop());

  const createOverHttp = (key: string) =>
    fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'api-key': key },
      body: JSON.stringify({ query: print(CreateText2ImageDocument), variables: { input: { prompt: 'a fox' } } }),
    });
  const postRest = (key: string) =>
    fetch(`${server.url}/sd/text2image/v1`, { method: 'POST', headers: { 'api-key': key }, body: JSON.stringify({ prompt: 'a fox' }) });

  it('answers RATE_LIMITED with 429 and Retry-After over GraphQL and REST once a key spends its burst; other keys go on', async () => {
    server = await startTestServer({ env: { RATE_LIMIT_JOBS_PER_MINUTE: '6', RATE_LIMIT_JOBS_BURST: '2' } });
    // Refused input does not spend the rate: fixing a request is never locked out by the attempts.
    for (let i = 0; i < 5; i++) {
      const bad = await fetch(`${server.url}/sd/text2image/v1`, {
        method: 'POST',
        headers: { 'api-key': server.key },
        body: '{"width":13}',
      });
      expect(bad.status).toBe(400);
    }
    expect((await createOverHttp(server.key)).status).toBe(200);
    expect((await postRest(server.key)).status).toBe(200);

    const gql = await createOverHttp(server.key);
    expect(gql.status).toBe(429);
    expect(Number(gql.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = (await gql.json()) as { data: unknown; errors: { message: string; extensions: Record<string, unknown> }[] };
    expect(body.errors[0]!.extensions.code).toBe('RATE_LIMITED');
    expect(body.errors[0]!.extensions.retryAfter).toBeGreaterThanOrEqual(1);
    expect(body.errors[0]!.message).toMatch(/at most 6 a minute/);

    const rest = await postRest(server.key);
    expect(rest.status).toBe(429);
    expect(Number(rest.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await rest.json()).toMatchObject({ status: 'FAILURE', code: 'RATE_LIMITED', error: expect.stringMatching(/too many new jobs/) });

    const other = await server.newKey('other');
    expect((await createOverHttp(other)).status).toBe(200);
  });

  it('caps the jobs a key may have unfinished; finishing or canceling one makes room', async () => {
    server = await startTestServer({ env: { MAX_ACTIVE_JOBS_PER_KEY: '2' } });
    server.upstream.behaviour.hold = true;
    const first = await server.gql(CreateText2ImageDocument, { input: { prompt: 'one' } });
    await server.gql(CreateText2ImageDocument, { input: { prompt: 'two' } });
    const third = await server.gql(CreateText2ImageDocument, { input: { prompt: 'three' } });
    expect(third.errors![0]!.extensions!.code).toBe('RATE_LIMITED');
    expect(third.errors![0]!.message).toMatch(/2 jobs waiting or running/);
    expect((await postRest(server.key)).status).toBe(429);

    await server.gql(CancelJobDocument, { id: first.data!.text2image.id });
    const fourth = await server.gql(CreateText2ImageDocument, { input: { prompt: 'four' } });
    expect(fourth.errors).toBeUndefined();
  });
});
