import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EngineUnavailableError, type EngineJob } from '../src/engines/engine.js';
import { DEFAULT_REMOTE_CATALOGUE } from '../src/engines/imagepipeline/catalogue-file.js';
import { ImagePipelineEngine } from '../src/engines/imagepipeline/imagepipeline-engine.js';
import { decodeWorkerHandle, encodeWorkerHandle } from '../src/engines/imagepipeline/worker-handle.js';
import { MAX_REQUEUES, mayRequeue } from '../src/jobs/job-transitions.js';
import type { Job } from '../src/jobs/job.js';
import { JobDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { FakeImagePipeline } from './fixtures/fake-imagepipeline.js';
import { collect, startTestServer, waitFor } from './helpers/test-server.js';
import { testParams } from './helpers/jobs.js';

const job = (id: string): EngineJob => ({ id, mode: 'text2image', params: testParams() });

/** An engine over these workers; probes are driven by hand in the tests (long interval). */
const engineFor = (
  workers: { url: string; apiKey: string | undefined }[],
  options: Partial<ConstructorParameters<typeof ImagePipelineEngine>[0]> = {},
) =>
  new ImagePipelineEngine({
    workers,
    timeoutMs: 2000,
    retries: 0,
    maxImageBytes: 1 << 20,
    probeIntervalMs: 60_000,
    workerGraceMs: 1000,
    catalogue: DEFAULT_REMOTE_CATALOGUE,
    fallbackCatalogue: DEFAULT_REMOTE_CATALOGUE,
    logger: pino({ level: 'silent' }),
    ...options,
  });

describe('worker handles', () => {
  it('round-trips, and reads a plain id (from before gateways) as the first worker’s', () => {
    const h = { worker: 'http://w1:4000', id: 'abc' };
    expect(decodeWorkerHandle(encodeWorkerHandle(h), 'http://first')).toEqual(h);
    expect(decodeWorkerHandle('plain-id', 'http://first')).toEqual({ worker: 'http://first', id: 'plain-id' });
    expect(decodeWorkerHandle('{not json', 'http://first')).toEqual({ worker: 'http://first', id: '{not json' });
  });
});

describe('requeue rules', () => {
  const base = { status: 'PENDING', requeues: 0 } as Job;
  const lost = { state: 'LOST', message: 'gone', retryElsewhere: true } as const;
  it('moves only jobs that never started, a bounded number of times, and only when the worker is gone', () => {
    expect(mayRequeue(base, lost)).toBe(true);
    expect(mayRequeue({ ...base, status: 'PROCESSING' }, lost)).toBe(false);
    expect(mayRequeue({ ...base, requeues: MAX_REQUEUES }, lost)).toBe(false);
    expect(mayRequeue(base, { state: 'LOST', message: 'the upstream forgot it' })).toBe(false);
    expect(mayRequeue(base, { state: 'QUEUED', queuePosition: 1 })).toBe(false);
  });
});

describe('the imagepipeline engine over several workers', () => {
  const fakes: FakeImagePipeline[] = [];
  let engine: ImagePipelineEngine | null = null;

  afterEach(async () => {
    await engine?.close();
    engine = null;
    await Promise.all(fakes.splice(0).map((f) => f.stop()));
  });

  async function setUp(n: number, graceMs = 150) {
    for (let i = 0; i < n; i++) {
      const fake = new FakeImagePipeline();
      fake.behaviour.hold = true;
      await fake.start();
      fakes.push(fake);
    }
    engine = engineFor(
      fakes.map((f) => ({ url: f.url, apiKey: f.apiKey })),
      { workerGraceMs: graceMs },
    );
    return engine;
  }

  it('sends each job to the worker with the fewest jobs in flight', async () => {
    const e = await setUp(3);
    const handles = new Map<string, string>();
    for (let i = 0; i < 6; i++) handles.set(`j${i}`, (await e.submit(job(`j${i}`))).handle);
    expect(fakes.map((f) => f.jobs.size)).toEqual([2, 2, 2]);
    // The middle worker's jobs end: it is now the least busy and gets the next two.
    fakes[1]!.behaviour.stepsPerPoll = 100;
    fakes[1]!.release();
    for (const [id, handle] of handles) {
      if (decodeWorkerHandle(handle, '').worker !== fakes[1]!.url) continue;
      let state = '';
      for (let i = 0; i < 5 && state !== 'SUCCESS'; i++) state = (await e.status(handle, job(id))).state;
      expect(state).toBe('SUCCESS');
    }
    await e.submit(job('j6'));
    await e.submit(job('j7'));
    expect(fakes.map((f) => f.jobs.size)).toEqual([2, 4, 2]);
  });

  it('skips a worker that stops answering, gives up its jobs after the grace period, and takes it back once it answers', async () => {
    const e = await setUp(2);
    const first = await e.submit(job('a'));
    const second = await e.submit(job('b'));
    const onFake0 = decodeWorkerHandle(first.handle, '').worker === fakes[0]!.url ? first : second;
    const port = Number(new URL(fakes[0]!.url).port);
    await fakes[0]!.stop();

    // The next submission finds worker 0 dead and goes to worker 1 within the same call.
    await e.submit(job('c'));
    await e.submit(job('d'));
    expect(fakes[1]!.jobs.size).toBe(3);
    expect(e.pool.get(fakes[0]!.url)!.healthy).toBe(false);

    // Within the grace period a status question is not even sent; after it the job is lost, movable.
    await expect(e.status(onFake0.handle, job('x'))).rejects.toBeInstanceOf(EngineUnavailableError);
    await new Promise((r) => setTimeout(r, 200));
    const lost = await e.status(onFake0.handle, job('x'));
    expect(lost).toMatchObject({ state: 'LOST', retryElsewhere: true });
    expect(lost.state === 'LOST' && lost.message).toContain(`${fakes[0]!.url} holding this job stopped answering`);

    // Back on its address: the probe notices and jobs flow to it again (it is the least busy).
    await fakes[0]!.start(port);
    await e.pool.probeAll();
    expect(e.pool.get(fakes[0]!.url)).toMatchObject({ healthy: false, halfOpen: true }); // one trial call decides
    const before = fakes[0]!.jobs.size;
    await e.submit(job('e'));
    expect(fakes[0]!.jobs.size).toBe(before + 1);
    expect(e.pool.get(fakes[0]!.url)).toMatchObject({ healthy: true, halfOpen: false });
  });

  it('a lone upstream that failed once is tried again as soon as it answers (half-open)', async () => {
    const e = await setUp(1);
    const port = Number(new URL(fakes[0]!.url).port);
    await fakes[0]!.stop();
    await expect(e.submit(job('a'))).rejects.toThrow(/no worker could take the job: .*ECONNREFUSED/);
    await fakes[0]!.start(port);
    await expect(e.submit(job('b'))).resolves.toMatchObject({ status: { state: 'QUEUED' } });
  });

  it('answers LOST for a job on a worker that is no longer configured', async () => {
    const e = await setUp(1);
    const status = await e.status(encodeWorkerHandle({ worker: 'http://removed:1', id: 'x' }), job('x'));
    expect(status).toMatchObject({ state: 'LOST', retryElsewhere: true });
  });
});

describe('a server with two upstream workers', () => {
  it('moves a queued job off a dead worker to the other one; a running one fails with the reason', async () => {
    const a = new FakeImagePipeline();
    const b = new FakeImagePipeline();
    await Promise.all([a.start(), b.start()]);
    a.behaviour.hold = true;
    b.behaviour.hold = true;
    const server = await startTestServer({
      upstream: a,
      env: {
        IMAGEPIPELINE_URL: `${a.url},${b.url}`,
        IMAGEPIPELINE_API_KEY: a.apiKey,
        IMAGEPIPELINE_RETRIES: '0',
        IMAGEPIPELINE_PROBE_INTERVAL_MS: '50',
        IMAGEPIPELINE_WORKER_GRACE_MS: '300',
      },
    });
    try {
      const ids: string[] = [];
      for (const prompt of ['one', 'two', 'three', 'four']) {
        ids.push((await server.gql(Text2ImageDocument, { input: { prompt } })).data!.text2image.id);
      }
      await waitFor(() => a.jobs.size === 2 && b.jobs.size === 2);
      // One of A's jobs starts processing; the other stays queued. Then A dies.
      const [running] = [...a.jobs.values()];
      a.release(running!.id);
      await waitFor(async () => {
        const states = await Promise.all(ids.map(async (id) => (await server.gql(JobDocument, { id })).data!.job!.status));
        return states.includes('PROCESSING');
      });
      await a.stop();
      b.behaviour.hold = false;
      b.release();

      const finals = await Promise.all(
        ids.map(async (id) => {
          const { values } = await collect(server.ws(), JobStatusDocument, { id }, 15_000);
          return values.at(-1)!.jobStatus;
        }),
      );
      const failed = finals.filter((j) => j.status === 'FAILURE');
      expect(failed).toHaveLength(1);
      expect(failed[0]!.error!.code).toBe('ENGINE_LOST_JOB');
      expect(failed[0]!.error!.message).toContain(`${a.url} holding this job stopped answering`);
      expect(finals.filter((j) => j.status === 'SUCCESS')).toHaveLength(3);
      expect(b.submits).toBe(3); // its own two, and the one moved off A
    } finally {
      await server.stop();
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe('submitting to a worker that is an instance of this server', () => {
  it('sends the job id as Idempotency-Key, so a repeated submission (after a crash) gets the first worker job back', async () => {
    const worker = await startTestServer();
    const engine = engineFor([{ url: worker.url, apiKey: worker.key }]);
    try {
      const first = await engine.submit(job('gateway-job-1'));
      const again = await engine.submit(job('gateway-job-1'));
      const other = await engine.submit(job('gateway-job-2'));
      expect(again.handle).toBe(first.handle);
      expect(other.handle).not.toBe(first.handle);
    } finally {
      await engine.close();
      await worker.stop();
    }
  });
});

describe('asking workers for their catalogue', () => {
  it('never stalls requests on a worker that does not answer: the first waits briefly, the rest not at all', async () => {
    const silent = createServer(() => {}); // accepts connections, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const engine = engineFor([{ url, apiKey: 'k' }], { timeoutMs: 10_000, catalogue: undefined });
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
