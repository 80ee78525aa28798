import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EngineUnavailableError, type EngineJob } from '../src/engines/engine.js';
import { DEFAULT_REMOTE_CATALOGUE } from '../src/engines/imagepipeline/catalogue-file.js';
import { ImagePipelineEngine } from '../src/engines/imagepipeline/imagepipeline-engine.js';
import { decodeUpstreamHandle, encodeUpstreamHandle, sameUpstream } from '../src/engines/imagepipeline/upstream-handle.js';
import { JobDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { FakeImagePipeline } from './fixtures/fake-imagepipeline.js';
import { collect, LOCAL_ENGINE, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';
import { testParams } from './helpers/jobs.js';

/**
 * The imagepipeline engine as a client of its one upstream, in process: handles (and those the
 * multi-upstream gateway stored), the circuit breaker and its probe, idempotent submissions,
 * cancel and catalogue through an upstream that is this server, and a server whose upstream
 * goes away mid-run. test/gateway.test.ts does the same with real processes.
 */

const job = (id: string): EngineJob => ({ id, mode: 'text2image', params: testParams() });

/** An engine over this upstream; probes are driven by hand in the tests (long interval). */
const engineFor = (
  upstream: { url: string; apiKey: string | undefined },
  options: Partial<ConstructorParameters<typeof ImagePipelineEngine>[0]> = {},
) =>
  new ImagePipelineEngine({
    url: upstream.url,
    apiKey: upstream.apiKey,
    timeoutMs: 2000,
    retries: 0,
    maxImageBytes: 1 << 20,
    probeIntervalMs: 60_000,
    catalogue: DEFAULT_REMOTE_CATALOGUE,
    fallbackCatalogue: DEFAULT_REMOTE_CATALOGUE,
    logger: pino({ level: 'silent' }),
    ...options,
  });

const portOf = (url: string) => Number(new URL(url).port);

describe('upstream handles', () => {
  it('are stored as the multi-upstream gateway stored them, and a plain id (from before handles named their upstream) is the configured upstream’s', () => {
    const h = { upstream: 'http://w1:4000', id: 'abc' };
    expect(encodeUpstreamHandle(h)).toBe('{"w":"http://w1:4000","id":"abc"}');
    expect(decodeUpstreamHandle(encodeUpstreamHandle(h), 'http://configured')).toEqual(h);
    expect(decodeUpstreamHandle('plain-id', 'http://configured')).toEqual({ upstream: 'http://configured', id: 'plain-id' });
    expect(decodeUpstreamHandle('{not json', 'http://configured')).toEqual({ upstream: 'http://configured', id: '{not json' });
  });

  it('compare upstreams as URLs', () => {
    expect(sameUpstream('http://Worker-A:80/', 'http://worker-a')).toBe(true);
    expect(sameUpstream('https://api.imagepipeline.io/', 'https://api.imagepipeline.io')).toBe(true);
    expect(sameUpstream('http://a:4001', 'http://a:4002')).toBe(false);
    expect(sameUpstream('http://a', 'https://a')).toBe(false);
  });
});

describe('the imagepipeline engine and its one upstream', () => {
  let fake: FakeImagePipeline | null = null;
  let engine: ImagePipelineEngine | null = null;

  afterEach(async () => {
    await engine?.close();
    engine = null;
    await fake?.stop();
    fake = null;
  });

  async function setUp() {
    fake = new FakeImagePipeline();
    fake.behaviour.hold = true;
    await fake.start();
    engine = engineFor({ url: fake.url, apiKey: fake.apiKey });
    return { e: engine, upstream: fake };
  }

  it('polls a stored handle naming the configured upstream (in the multi-upstream format) or a plain id; one naming another upstream is LOST, naming it, without a call', async () => {
    const { e, upstream } = await setUp();
    const submitted = await e.submit(job('a'));
    const { id } = decodeUpstreamHandle(submitted.handle, '');
    expect(JSON.parse(submitted.handle)).toEqual({ w: upstream.url, id });
    expect(await e.status(submitted.handle, job('a'))).toMatchObject({ state: 'QUEUED' });
    expect(await e.status(id, job('a'))).toMatchObject({ state: 'QUEUED' });
    expect(await e.status(encodeUpstreamHandle({ upstream: `${upstream.url}/`, id }), job('a'))).toMatchObject({ state: 'QUEUED' });
    expect(upstream.jobs.get(id)!.statusCalls).toBe(3);

    const elsewhere = encodeUpstreamHandle({ upstream: 'http://10.0.0.12:4002', id });
    const lost = await e.status(elsewhere, job('a'));
    expect(lost).toEqual({ state: 'LOST', message: expect.stringContaining('the upstream http://10.0.0.12:4002') });
    expect(lost.state === 'LOST' && lost.message).toContain(`IMAGEPIPELINE_URL is ${upstream.url}`);
    await e.cancel(elsewhere); // nothing to ask, and no error
    expect(upstream.jobs.get(id)!.statusCalls).toBe(3);
  });

  it('an upstream that stops answering: the circuit opens, no poll is sent while it is open, a probe that gets an answer half-opens it, one trial call decides', async () => {
    const { e, upstream } = await setUp();
    const a = await e.submit(job('a'));
    const { id } = decodeUpstreamHandle(a.handle, '');
    const port = portOf(upstream.url);
    await upstream.stop();

    await expect(e.status(a.handle, job('a'))).rejects.toThrow(/could not reach the engine at .*ECONNREFUSED/);
    expect(e.health).toMatchObject({ healthy: false, halfOpen: false });
    await upstream.start(port);
    // Open: the status question is not even sent (the poller counts this against its failure budget).
    const calls = upstream.jobs.get(id)!.statusCalls;
    const refused = e.status(a.handle, job('a'));
    await expect(refused).rejects.toBeInstanceOf(EngineUnavailableError);
    await expect(refused).rejects.toThrow(`the upstream ${upstream.url} is not answering: could not reach the engine`);
    expect(upstream.jobs.get(id)!.statusCalls).toBe(calls);

    // The probe gets an answer: one trial call at a time; a failed trial opens it again.
    await e.health.probe();
    expect(e.health).toMatchObject({ healthy: false, halfOpen: true });
    upstream.behaviour.statusFault = 503;
    const [trial, other] = await Promise.allSettled([e.status(a.handle, job('a')), e.status(a.handle, job('a'))]);
    expect(trial).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/HTTP 503/) } });
    expect(other).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/is not answering/) } });
    expect(upstream.jobs.get(id)!.statusCalls).toBe(calls + 1);
    expect(e.health).toMatchObject({ healthy: false, halfOpen: false });

    // Answering again: the next probe half-opens, the trial succeeds and closes the circuit.
    upstream.behaviour.statusFault = null;
    await e.health.probe();
    expect(await e.status(a.handle, job('a'))).toMatchObject({ state: 'QUEUED' });
    expect(e.health).toMatchObject({ healthy: true, halfOpen: false, lastError: null });
  });

  it('a submission to an upstream marked unhealthy probes it first, so a lone upstream that failed once takes jobs as soon as it answers', async () => {
    const { e, upstream } = await setUp();
    const port = portOf(upstream.url);
    await upstream.stop();
    await expect(e.submit(job('a'))).rejects.toThrow(/could not reach the engine at .*ECONNREFUSED/);
    // Still down: the probe says so, and the submission is not sent.
    await expect(e.submit(job('b'))).rejects.toThrow(new RegExp(`the upstream ${upstream.url} is not answering: .*ECONNREFUSED`));
    expect(upstream.submits).toBe(0);
    await upstream.start(port);
    await expect(e.submit(job('c'))).resolves.toMatchObject({ status: { state: 'QUEUED' } });
    expect(e.health.healthy).toBe(true);
    expect(upstream.submits).toBe(1);
  });
});

describe('an upstream that is an instance of this server', () => {
  it('gets the job id as Idempotency-Key, so a repeated submission (after a crash) gets the first upstream job back', async () => {
    const upstream = await startTestServer();
    const engine = engineFor({ url: upstream.url, apiKey: upstream.key });
    try {
      const first = await engine.submit(job('gateway-job-1'));
      const again = await engine.submit(job('gateway-job-1'));
      const other = await engine.submit(job('gateway-job-2'));
      expect(again.handle).toBe(first.handle);
      expect(other.handle).not.toBe(first.handle);
    } finally {
      await engine.close();
      await upstream.stop();
    }
  });

  it('tells its catalogue over GraphQL, and cancels a job there over GraphQL cancelJob', async () => {
    const upstream = await startTestServer({ env: LOCAL_ENGINE });
    const engine = engineFor({ url: upstream.url, apiKey: upstream.key }, { catalogue: undefined });
    try {
      const ids = (await engine.catalogue()).list().map((m) => m.id);
      expect(ids).toEqual(expect.arrayContaining(['tiny', 'tiny-inpainting', 'tiny-a1111']));
      const long = { ...job('to-cancel'), params: testParams({ modelId: 'tiny', numInferenceSteps: 100, width: 512, height: 512 }) };
      const { handle } = await engine.submit(long);
      const { id } = decodeUpstreamHandle(handle, '');
      await waitFor(async () => (await upstream.gql(JobDocument, { id })).data?.job?.status === 'PROCESSING', 30_000);
      await engine.cancel(handle);
      expect((await upstream.gql(JobDocument, { id })).data!.job!.status).toBe('CANCELED');
      expect(await engine.status(handle, long)).toMatchObject({ state: 'FAILURE', message: 'the job was canceled' });
    } finally {
      await engine.close();
      await upstream.stop();
    }
  }, 60_000);
});

describe('asking the upstream for its catalogue', () => {
  it('never stalls requests on an upstream that does not answer: the first waits briefly, the rest not at all', async () => {
    const silent = createServer(() => {}); // accepts connections, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const engine = engineFor({ url, apiKey: 'k' }, { timeoutMs: 10_000, catalogue: undefined });
    try {
      let started = Date.now();
      expect((await engine.catalogue()).find('sd1.5')).toBeDefined(); // the fallback meanwhile
      expect(Date.now() - started).toBeLessThan(2_500);
      started = Date.now();
      await engine.catalogue();
      expect(Date.now() - started).toBeLessThan(200);
    } finally {
      silent.closeAllConnections();
      silent.close();
      await engine.close();
    }
  });
});

describe('a server whose one upstream goes away mid-run', () => {
  const createHeld = async (server: TestServer, n: number) => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push((await server.gql(Text2ImageDocument, { input: { prompt: `held ${i}` } })).data!.text2image.id);
    await waitFor(() => server.upstream.jobs.size === n);
    // One of them starts; the others stay queued on the upstream.
    const [running] = [...server.upstream.jobs.values()];
    server.upstream.release(running!.id);
    await waitFor(async () => {
      const states = await Promise.all(ids.map(async (id) => (await server.gql(JobDocument, { id })).data!.job!.status));
      return states.includes('PROCESSING');
    });
    return ids;
  };
  const statusOf = async (server: TestServer, id: string) => (await server.gql(JobDocument, { id })).data!.job!.status;
  const end = async (server: TestServer, id: string) => {
    const { values } = await collect(server.ws(), JobStatusDocument, { id }, 15_000);
    return values.at(-1)!.jobStatus;
  };

  it('back within the failure budget: the jobs it holds go on, and one created meanwhile waits and is submitted once it answers', async () => {
    const upstream = new FakeImagePipeline();
    await upstream.start();
    upstream.behaviour.hold = true;
    upstream.behaviour.stepsPerPoll = 1;
    const server = await startTestServer({
      upstream,
      env: { IMAGEPIPELINE_RETRIES: '0', IMAGEPIPELINE_PROBE_INTERVAL_MS: '50', POLL_FAILURE_BUDGET_MS: '20000' },
    });
    try {
      const ids = await createHeld(server, 3);
      const port = portOf(upstream.url);
      await upstream.stop();
      const meanwhile = (await server.gql(Text2ImageDocument, { input: { prompt: 'while it is down' } })).data!.text2image.id;
      await new Promise((r) => setTimeout(r, 600));
      for (const id of [...ids, meanwhile]) expect(['PENDING', 'PROCESSING']).toContain(await statusOf(server, id));

      await upstream.start(port);
      upstream.behaviour.hold = false;
      upstream.behaviour.stepsPerPoll = 100;
      upstream.release();
      const finals = await Promise.all([...ids, meanwhile].map((id) => end(server, id)));
      expect(finals.map((j) => j.status)).toEqual(['SUCCESS', 'SUCCESS', 'SUCCESS', 'SUCCESS']);
      expect(upstream.submits).toBe(4); // each job went up once
    } finally {
      await server.stop();
      await upstream.stop();
    }
  });

  it('down past the budget: every job it holds ends FAILURE with the reason, a new one too once its submissions run out of budget; it takes jobs again once back', async () => {
    const upstream = new FakeImagePipeline();
    await upstream.start();
    upstream.behaviour.hold = true;
    const server = await startTestServer({
      upstream,
      env: { IMAGEPIPELINE_RETRIES: '0', IMAGEPIPELINE_PROBE_INTERVAL_MS: '50', POLL_FAILURE_BUDGET_MS: '700' },
    });
    try {
      const ids = await createHeld(server, 3);
      const port = portOf(upstream.url);
      await upstream.stop();
      const created = (await server.gql(Text2ImageDocument, { input: { prompt: 'while it is down' } })).data!.text2image;
      expect(created.status).toBe('PENDING');

      const finals = await Promise.all([...ids, created.id].map((id) => end(server, id)));
      for (const j of finals) {
        expect(j.status).toBe('FAILURE');
        expect(j.error!.code).toBe('ENGINE_UNREACHABLE');
        expect(j.error!.message).toMatch(/^the engine stayed unreachable: /);
        expect(j.error!.message).toContain(`the upstream ${upstream.url} is not answering`);
        expect(j.error!.message).toMatch(/ECONNREFUSED/);
        expect(j.finishedAt).not.toBeNull();
      }

      await upstream.start(port);
      upstream.behaviour.hold = false;
      const again = (await server.gql(Text2ImageDocument, { input: { prompt: 'back' } })).data!.text2image.id;
      expect((await end(server, again)).status).toBe('SUCCESS');
    } finally {
      await server.stop();
      await upstream.stop();
    }
  });
});

describe('jobs stored by the multi-upstream gateway, after an upgrade', () => {
  it('are polled when their handle names the configured upstream or is a plain id; one naming another upstream ends ENGINE_LOST_JOB naming it', async () => {
    const upstream = new FakeImagePipeline();
    await upstream.start();
    upstream.behaviour.hold = true;
    const before = await startTestServer({ upstream });
    const ids: string[] = [];
    for (const prompt of ['plain', 'listed', 'elsewhere']) {
      ids.push((await before.gql(Text2ImageDocument, { input: { prompt } })).data!.text2image.id);
    }
    const db = new Database(path.join(before.dataDir, 'sd-api.sqlite'));
    const handleOf = (id: string) =>
      (db.prepare('SELECT engine_handle FROM jobs WHERE id = ?').get(id) as { engine_handle: string | null }).engine_handle;
    const setHandle = (id: string, handle: string) => db.prepare('UPDATE jobs SET engine_handle = ? WHERE id = ?').run(handle, id);
    await waitFor(() => ids.every((id) => handleOf(id)));
    await before.stop({ keepData: true });

    // What the gateway of several upstreams left in the store: handles naming the upstream of each
    // job ({"w": url, "id": id}), older ones a plain id, and one on an upstream no longer listed.
    const upstreamIds = ids.map((id) => decodeUpstreamHandle(handleOf(id)!, '').id);
    expect(JSON.parse(handleOf(ids[1]!)!)).toEqual({ w: upstream.url, id: upstreamIds[1] });
    setHandle(ids[0]!, upstreamIds[0]!);
    setHandle(ids[2]!, JSON.stringify({ w: 'http://10.0.0.12:4002', id: upstreamIds[2] }));
    db.close();
    const askedBefore = upstream.jobs.get(upstreamIds[2]!)!.statusCalls;

    const after = await startTestServer({ upstream, dataDir: before.dataDir });
    try {
      upstream.behaviour.hold = false;
      upstream.release();
      const finals = await Promise.all(
        ids.map(async (id) => {
          const { values } = await collect(after.ws({ apiKey: before.key }), JobStatusDocument, { id });
          return values.at(-1)!.jobStatus;
        }),
      );
      expect(finals[0]!.status).toBe('SUCCESS');
      expect(finals[1]!.status).toBe('SUCCESS');
      expect(finals[2]!.status).toBe('FAILURE');
      expect(finals[2]!.error!.code).toBe('ENGINE_LOST_JOB');
      expect(finals[2]!.error!.message).toContain('the upstream http://10.0.0.12:4002');
      expect(upstream.submits).toBe(3); // none submitted again
      expect(upstream.jobs.get(upstreamIds[2]!)!.statusCalls).toBe(askedBefore); // not asked of the configured upstream
    } finally {
      await after.stop();
      await upstream.stop();
    }
  });
});
