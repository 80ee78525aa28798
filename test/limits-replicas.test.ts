import { rmSync } from 'node:fs';
import { print } from 'graphql';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CancelJobDocument, CreateText2ImageDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { RedisLeases } from '../src/limits/leases.js';
import { LimitsRedis } from '../src/limits/limits-redis.js';
import { RedisTokenBuckets } from '../src/limits/redis-token-buckets.js';
import { TokenBuckets } from '../src/limits/token-buckets.js';
import { createLogger } from '../src/logger.js';
import type { WorkerApp } from '../src/worker-app.js';
import { freePort, sleep } from './helpers/crash-harness.js';
import { follow } from './helpers/follow.js';
import {
  killProcess,
  newDataDir,
  queueEnv,
  REDIS_URL,
  removePrefix,
  sharedPostgres,
  startWorker,
  testPrefix,
  type SharedStore,
} from './helpers/queue.js';
import { startServerProcess } from './helpers/server-process.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

/**
 * The per-key limits with several API replicas on one Redis (REDIS_URL, default
 * 127.0.0.1:6379) and one store (Postgres, a schema per describe block): the rate, the cap on unfinished jobs, the WebSocket caps, a
 * crashed replica's connections expiring, and what the limits do while Redis is away.
 */

const small = { prompt: 'a gate', width: 64, height: 64, numInferenceSteps: 4, safetyChecker: false };
/** A second or so on the tiny models: still unfinished when the next request comes. */
const slower = { ...small, width: 256, height: 256, numInferenceSteps: 30 };

function openSocket(url: string) {
  const socket = new WebSocket(`${url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
  const opened = new Promise<void>((resolve) => socket.once('open', () => resolve()));
  return { socket, closed, opened };
}

/** Opens a socket and sends connection_init: resolves to 'connection_ack', or the close code. */
async function connect(url: string, apiKey: string) {
  const s = openSocket(url);
  await s.opened;
  s.socket.send(JSON.stringify({ type: 'connection_init', payload: { apiKey } }));
  const answer = await Promise.race([
    new Promise<string>((resolve) => s.socket.once('message', (m) => resolve(JSON.parse(String(m)).type as string))),
    s.closed,
  ]);
  return { ...s, answer };
}

const keyIdOf = async (server: TestServer, name: string) => (await server.app.keys.list()).find((k) => k.name === name)!.id;

describe('rate limits and WebSocket caps shared by two API replicas', () => {
  const prefix = testPrefix('limits');
  const dataDir = newDataDir();
  let shared: SharedStore;
  let env: Record<string, string>;
  const sockets: WebSocket[] = [];
  let a: TestServer;
  let b: TestServer;
  let redis: Redis;

  beforeAll(async () => {
    shared = await sharedPostgres('limits_rate');
    env = queueEnv(prefix, dataDir, shared, {
      RATE_LIMIT_JOBS_PER_MINUTE: '1',
      RATE_LIMIT_JOBS_BURST: '3',
      WS_MAX_CONNECTIONS_PER_KEY: '2',
      WS_MAX_SUBSCRIPTIONS_PER_KEY: '2',
      WS_LEASE_MS: '1500',
    });
    // No worker: the jobs created here stay PENDING, which is all these tests need.
    a = await startTestServer({ dataDir, env });
    b = await startTestServer({ dataDir, env });
    redis = new Redis(REDIS_URL);
  }, 60_000);
  afterAll(async () => {
    for (const s of sockets) s.terminate();
    redis?.disconnect();
    await b?.stop({ keepData: true });
    await a?.stop({ keepData: true });
    await shared?.drop();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a key that spent its burst on replica A is refused on replica B (429, Retry-After), over GraphQL and REST; other keys go on', async () => {
    const key = await a.newKey('rate');
    for (const server of [a, a, b]) {
      const created = await server.gql(CreateText2ImageDocument, { input: small }, key);
      expect(created.errors).toBeUndefined();
    }
    const refused = await fetch(`${b.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'api-key': key },
      body: JSON.stringify({ query: print(CreateText2ImageDocument), variables: { input: small } }),
    });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = (await refused.json()) as { errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors[0]!.extensions.code).toBe('RATE_LIMITED');
    expect(body.errors[0]!.message).toMatch(/at most 1 a minute, 3 at once/);
    const rest = await fetch(`${a.url}/sd/text2image/v1`, { method: 'POST', headers: { 'api-key': key }, body: JSON.stringify(small) });
    expect(rest.status).toBe(429);
    expect(await rest.json()).toMatchObject({ code: 'RATE_LIMITED' });
    expect((await b.gql(CreateText2ImageDocument, { input: small }, await b.newKey('other'))).errors).toBeUndefined();

    // One key on Redis per API key and bucket, expiring once it would have refilled (3 tokens at 1 a minute).
    const bucket = `${prefix}:limits:rate:jobs:${await keyIdOf(a, 'rate')}`;
    expect(Number(await redis.hget(bucket, 'tokens'))).toBeLessThan(0.1);
    const ttl = await redis.pttl(bucket);
    expect(ttl).toBeGreaterThan(170_000);
    expect(ttl).toBeLessThanOrEqual(181_000);
  });

  it('connections of one key are capped over both replicas (4429), and a closed one frees its place on the other', async () => {
    const key = await a.newKey('sockets');
    const first = await connect(a.url, key);
    const second = await connect(b.url, key);
    sockets.push(first.socket, second.socket);
    expect([first.answer, second.answer]).toEqual(['connection_ack', 'connection_ack']);
    expect((await connect(a.url, key)).answer).toBe(4429);
    expect((await connect(b.url, key)).answer).toBe(4429);

    first.socket.close();
    await first.closed;
    const again = await waitFor(async () => {
      const s = await connect(b.url, key);
      sockets.push(s.socket);
      return s.answer === 'connection_ack' ? s : null;
    }, 5_000);
    expect(again.answer).toBe('connection_ack');
  });

  it('subscriptions of one key are capped over both replicas (RATE_LIMITED); a completed one frees its place', async () => {
    const key = await a.newKey('subscriptions');
    const id = (await a.gql(Text2ImageDocument, { input: small }, key)).data!.text2image.id;
    const onA = a.ws({ apiKey: key });
    const onB = b.ws({ apiKey: key });
    const held = [follow(onA, id), follow(onB, id)];
    await Promise.all(held.map((f) => f.until(() => true)));
    const third = await collect(onB, JobStatusDocument, { id });
    expect(third.errors.flat()).toEqual([
      expect.objectContaining({ message: expect.stringMatching(/already has 2 subscriptions open/), extensions: { code: 'RATE_LIMITED' } }),
    ]);
    held[0]!.stop();
    const fourth = await waitFor(async () => {
      const f = follow(onB, id);
      const first = await Promise.race([
        f.until(() => true).then(() => 'open'),
        f.done.then(
          () => 'ended',
          () => 'refused',
        ),
      ]);
      if (first === 'open') return f;
      return null;
    }, 5_000);
    fourth.stop();
    held[1]!.stop();
  });

  it("a replica that dies (SIGKILL) stops holding its key's connections within one lease (WS_LEASE_MS)", async () => {
    const key = await a.newKey('crash');
    const replica = startServerProcess({ ...env, PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'silent' }, 60_000);
    try {
      const url = await replica.url;
      const held = [await connect(url, key), await connect(url, key)];
      expect(held.map((s) => s.answer)).toEqual(['connection_ack', 'connection_ack']);
      // Held by the other process: refused here, and still after a few renewals.
      expect((await connect(a.url, key)).answer).toBe(4429);
      await sleep(1_600);
      expect((await connect(a.url, key)).answer).toBe(4429);
      const group = `${prefix}:limits:ws:connections:${await keyIdOf(a, 'crash')}`;
      expect(await redis.zcard(group)).toBe(2);

      await killProcess({ child: replica.child, exited: replica.exited });
      const killedAt = Date.now();
      const accepted = await waitFor(async () => {
        const s = await connect(a.url, key);
        sockets.push(s.socket);
        return s.answer === 'connection_ack' ? s : null;
      }, 10_000);
      const tookMs = Date.now() - killedAt;
      console.log(`a killed replica's connections stopped counting after ${tookMs} ms (lease 1500 ms)`);
      expect(accepted.answer).toBe('connection_ack');
      expect(tookMs).toBeLessThan(1_500 + 1_000);
      // The dead replica's members are gone; only this one is left.
      expect(await redis.zcard(group)).toBe(1);
    } finally {
      await killProcess({ child: replica.child, exited: replica.exited });
    }
  }, 90_000);
});

describe('the cap on unfinished jobs (2) over two replicas, released by ends on a worker', () => {
  const prefix = testPrefix('limits-cap');
  const dataDir = newDataDir();
  let shared: SharedStore;
  let env: Record<string, string>;
  let a: TestServer;
  let b: TestServer;
  let worker: WorkerApp;
  let redis: Redis;

  beforeAll(async () => {
    shared = await sharedPostgres('limits_cap');
    env = queueEnv(prefix, dataDir, shared, { MAX_ACTIVE_JOBS_PER_KEY: '2' });
    a = await startTestServer({ dataDir, env });
    b = await startTestServer({ dataDir, env });
    worker = await startWorker(env);
    redis = new Redis(REDIS_URL);
  }, 60_000);
  afterAll(async () => {
    redis?.disconnect();
    await worker?.stop();
    await b?.stop({ keepData: true });
    await a?.stop({ keepData: true });
    await shared?.drop();
    await removePrefix(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  });

  const refusedFor = async (server: TestServer, key: string) => {
    const r = await server.gql(CreateText2ImageDocument, { input: small }, key);
    return r.errors?.[0]?.message ?? null;
  };

  it('one job on each replica fills the cap on both; once they end on the worker, either replica takes more', async () => {
    const key = await a.newKey('cap');
    const activeSet = `${prefix}:limits:active:${await keyIdOf(a, 'cap')}`;
    const ids = [
      (await a.gql(Text2ImageDocument, { input: slower }, key)).data!.text2image.id,
      (await b.gql(Text2ImageDocument, { input: small }, key)).data!.text2image.id,
    ];
    expect(await refusedFor(a, key)).toMatch(/has 2 jobs waiting or running/);
    expect(await refusedFor(b, key)).toMatch(/has 2 jobs waiting or running/);
    expect(await redis.zcard(activeSet)).toBe(2);
    const ends = await Promise.all(ids.map((id) => follow(a.ws({ apiKey: key }), id).done));
    expect(ends.map((j) => j.status)).toEqual(['SUCCESS', 'SUCCESS']);
    await waitFor(async () => (await redis.zcard(activeSet)) === 0, 5_000);
    expect(await refusedFor(b, key)).toBeNull();
    expect(await refusedFor(a, key)).toBeNull();
  });

  it('jobs created on a replica that then stops are released by the other when they end on the worker', async () => {
    const key = await a.newKey('gone');
    const activeSet = `${prefix}:limits:active:${await keyIdOf(a, 'gone')}`;
    const c = await startTestServer({ dataDir, env });
    const ids = await Promise.all([c, c].map(async (s) => (await s.gql(Text2ImageDocument, { input: slower }, key)).data!.text2image.id));
    expect(await redis.zcard(activeSet)).toBe(2);
    await c.stop({ keepData: true });
    expect(await refusedFor(b, key)).toMatch(/has 2 jobs waiting or running/);
    for (const id of ids) expect((await follow(b.ws({ apiKey: key }), id).done).status).toBe('SUCCESS');
    await waitFor(async () => (await redis.zcard(activeSet)) === 0, 5_000);
    expect(await refusedFor(b, key)).toBeNull();
  });

  it('the store is the source of truth: counted jobs that ended unheard (or never existed) are uncounted by the next reconciling pass', async () => {
    const key = await a.newKey('stale');
    const keyId = await keyIdOf(a, 'stale');
    const activeSet = `${prefix}:limits:active:${keyId}`;
    const done = (await a.gql(Text2ImageDocument, { input: small }, key)).data!.text2image.id;
    expect((await follow(a.ws({ apiKey: key }), done).done).status).toBe('SUCCESS');
    await waitFor(async () => (await redis.zcard(activeSet)) === 0, 5_000);
    // As if the ends had been missed: a finished job, and a job that never got into the store (a minute and more ago).
    const [seconds] = await redis.time();
    await redis.zadd(activeSet, Date.now(), done, (Number(seconds) - 120) * 1000, 'never-stored');
    await redis.sadd(`${prefix}:limits:active-keys`, keyId);
    expect(await refusedFor(b, key)).toMatch(/has 2 jobs waiting or running/);
    const t0 = Date.now();
    await waitFor(async () => (await redis.zcard(activeSet)) === 0, 5_000);
    console.log(`stale members uncounted after ${Date.now() - t0} ms (QUEUE_RECONCILE_INTERVAL_MS 500)`);
    expect(await refusedFor(b, key)).toBeNull();
  });
});

describe('Redis unreachable: the limits decide without it, never a 5xx', () => {
  const dataDir = newDataDir();
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({
      dataDir,
      env: {
        REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
        REDIS_PREFIX: testPrefix('limits-down'),
        LOG_LEVEL: 'silent',
        RATE_LIMIT_JOBS_PER_MINUTE: '1',
        RATE_LIMIT_JOBS_BURST: '2',
        MAX_ACTIVE_JOBS_PER_KEY: '2',
        WS_MAX_CONNECTIONS_PER_KEY: '1',
      },
    });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("the cap is counted in the store, the rate by this replica's own buckets, WebSockets by this replica's caps", async () => {
    const create = () => server.gql(CreateText2ImageDocument, { input: small });
    const [one, two] = [await create(), await create()];
    expect([one.errors, two.errors]).toEqual([undefined, undefined]);
    const capped = await create();
    expect(capped.errors![0]!.extensions!.code).toBe('RATE_LIMITED');
    expect(capped.errors![0]!.message).toMatch(/has 2 jobs waiting or running/);
    // One canceled (in the store): room under the cap, but the burst is spent.
    expect((await server.gql(CancelJobDocument, { id: one.data!.text2image.id })).data!.cancelJob.status).toBe('CANCELED');
    const rated = await create();
    expect(rated.errors![0]!.extensions!.code).toBe('RATE_LIMITED');
    expect(rated.errors![0]!.message).toMatch(/too many new jobs/);

    const socket = await connect(server.url, server.key);
    expect(socket.answer).toBe('connection_ack');
    expect((await connect(server.url, server.key)).answer).toBe(4429);
    socket.socket.close();
  }, 40_000); // each create waits up to 2 s for the queue (JobQueue.add), then answers anyway
});

describe('the Redis limits on their own', () => {
  const prefix = testPrefix('limits-unit');
  const logger = createLogger('silent');
  const clients: Redis[] = [];
  const shared = () => {
    const redis = new Redis(REDIS_URL);
    clients.push(redis);
    return new LimitsRedis(redis, prefix, logger);
  };
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await removePrefix(prefix);
  });

  it('a bucket taken from by two processes at once grants exactly its burst', async () => {
    const [one, two] = [shared(), shared()];
    const buckets = [one, two].map((s) => new RedisTokenBuckets(s, 'jobs', new TokenBuckets(5, 1 / 60)));
    const waits = await Promise.all(Array.from({ length: 40 }, (_, i) => buckets[i % 2]!.take('k')));
    expect(waits.filter((w) => w === 0)).toHaveLength(5);
    // The next token in about a minute (1 a minute).
    for (const w of waits.filter((x) => x > 0)) expect(w).toBeGreaterThan(55_000);
  });

  it('a lease released while it is being counted is uncounted; renewals keep the held ones; close() removes them', async () => {
    const s = shared();
    const leases = new RedisLeases(s, 600);
    try {
      const group = `${prefix}:limits:ws:g`;
      const acquiring = leases.acquire('g', 'm1', 2);
      leases.release('g', 'm1');
      expect(await acquiring).toBe(false);
      await waitFor(async () => (await s.redis.zcard(group)) === 0, 2_000);
      expect(await leases.acquire('g', 'm2', 2)).toBe(true);
      expect(await leases.acquire('g', 'm3', 2)).toBe(true);
      expect(await leases.acquire('g', 'm4', 2)).toBe(false);
      await sleep(1_500); // past two leases: held only because they are renewed
      expect(await s.redis.zcard(group)).toBe(2);
      expect(leases.heldCount()).toBe(2);
    } finally {
      await leases.close();
    }
    expect(await s.redis.zcard(`${prefix}:limits:ws:g`)).toBe(0);
  });
});
