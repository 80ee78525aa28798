import { readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobDocument, JobsDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

describe('engine faults end a job clearly and never take the server down', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { POLL_FAILURE_BUDGET_MS: '300' } });
  });
  afterEach(() => {
    server.upstream.behaviour = {
      ...server.upstream.behaviour,
      failWith: null,
      failCode: null,
      malformedStatus: null,
      unavailableSubmits: 0,
    };
  });
  afterAll(() => server.stop());

  const run = async () => {
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a lighthouse', numInferenceSteps: 10 } });
    expect(created.errors).toBeUndefined();
    const { values } = await collect(server.ws(), JobStatusDocument, { id: created.data!.text2image.id });
    return values.at(-1)!.jobStatus;
  };

  it("passes the upstream's failure message through as FAILURE", async () => {
    server.upstream.behaviour.failWith = 'CUDA out of memory on the upstream';
    const job = await run();
    expect(job.status).toBe('FAILURE');
    expect(job.error).toEqual({ code: 'ENGINE_FAILED', message: 'CUDA out of memory on the upstream' });
    expect(job.downloadUrls).toEqual([]);
    expect(job.finishedAt).not.toBeNull();
  });

  it("keeps a worker's code when it blames the request (INVALID_INPUT, IMAGE_UNAVAILABLE), and says ENGINE_FAILED for any other", async () => {
    server.upstream.behaviour.failWith = 'initImage: the image cannot be decoded';
    server.upstream.behaviour.failCode = 'INVALID_INPUT';
    expect((await run()).error).toEqual({ code: 'INVALID_INPUT', message: 'initImage: the image cannot be decoded' });
    server.upstream.behaviour.failCode = 'IMAGE_UNAVAILABLE';
    expect((await run()).error!.code).toBe('IMAGE_UNAVAILABLE');
    server.upstream.behaviour.failCode = 'INTERNAL';
    expect((await run()).error!.code).toBe('ENGINE_FAILED');
  });

  it("never stores or shows secrets or stack traces from an upstream's error message", async () => {
    server.upstream.behaviour.failWith = `boom with key ${server.upstream.apiKey} and sdk_${'x'.repeat(43)} reading /srv/models/sd15/unet/model.onnx (see https://example.com/docs/errors/42)\n    at Object.<anonymous> (/srv/app.js:1:1)\n    at node:internal`;
    const job = await run();
    expect(job.error!.code).toBe('ENGINE_FAILED');
    expect(job.error!.message).toBe(
      'boom with key [redacted] and [redacted] reading …/unet/model.onnx (see https://example.com/docs/errors/42)',
    );
  });

  it('fails a job on a malformed upstream reply, naming the problem, and keeps serving', async () => {
    server.upstream.behaviour.malformedStatus = '{"status":"SUCCESS","download_urls":"not-a-list"}';
    const job = await run();
    expect(job.status).toBe('FAILURE');
    expect(job.error!.code).toBe('ENGINE_BAD_REPLY');
    expect(job.error!.message).toMatch(/malformed reply: download_urls/);

    server.upstream.behaviour.malformedStatus = '<html>502 Bad Gateway</html>';
    const second = await run();
    expect(second.error!.code).toBe('ENGINE_BAD_REPLY');
    expect(second.error!.message).toMatch(/not JSON/);

    server.upstream.behaviour.malformedStatus = null;
    expect((await run()).status).toBe('SUCCESS');
  });

  it('retries submissions the upstream answers with 5xx', async () => {
    server.upstream.behaviour.unavailableSubmits = 2;
    const job = await run();
    expect(job.status).toBe('SUCCESS');
    expect(server.upstream.behaviour.unavailableSubmits).toBe(0);
  });

  it('ends a job FAILURE with ENGINE_LOST_JOB when the upstream no longer knows it', async () => {
    server.upstream.behaviour.hold = true;
    const before = server.upstream.jobs.size;
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a tower' } });
    const id = created.data!.text2image.id;
    const sub = collect(server.ws(), JobStatusDocument, { id });
    await waitForUpstreamJobs(server, before + 1);
    server.upstream.forgetAll();
    server.upstream.behaviour.hold = false;
    const { values } = await sub;
    const last = values.at(-1)!.jobStatus;
    expect(last.status).toBe('FAILURE');
    expect(last.error!.code).toBe('ENGINE_LOST_JOB');
    expect(last.error!.message).toMatch(/no longer knows/);
  });

  it('fails a job whose upstream stays unreachable past the budget', async () => {
    const other = await startTestServer({
      env: { IMAGEPIPELINE_URL: 'http://127.0.0.1:9', POLL_FAILURE_BUDGET_MS: '200', IMAGEPIPELINE_RETRIES: '0' },
    });
    try {
      const created = await other.gql(Text2ImageDocument, { input: { prompt: 'nothing listens there' } });
      expect(created.data!.text2image.status).toBe('PENDING');
      const { values } = await collect(other.ws(), JobStatusDocument, { id: created.data!.text2image.id });
      const last = values.at(-1)!.jobStatus;
      expect(last.status).toBe('FAILURE');
      expect(last.error!.code).toBe('ENGINE_UNREACHABLE');
      expect(last.error!.message).toMatch(/ECONNREFUSED/);
      const health = await fetch(`${other.url}/healthz`);
      expect(health.status).toBe(200);
    } finally {
      await other.stop();
    }
  });

  it('refuses an upstream API key mismatch with the upstream message', async () => {
    const other = await startTestServer({ upstream: server.upstream, env: { IMAGEPIPELINE_API_KEY: 'wrong' } });
    try {
      const created = await other.gql(Text2ImageDocument, { input: { prompt: 'x' } });
      const { values } = await collect(other.ws(), JobStatusDocument, { id: created.data!.text2image.id });
      expect(values.at(-1)!.jobStatus.error).toEqual({ code: 'ENGINE_FAILED', message: 'Invalid API key' });
      const read = await other.gql(JobDocument, { id: created.data!.text2image.id });
      expect(read.data!.job!.status).toBe('FAILURE');
    } finally {
      await other.stop();
    }
  });
});

async function waitForUpstreamJobs(server: TestServer, n: number) {
  const until = Date.now() + 5000;
  while (server.upstream.jobs.size < n) {
    if (Date.now() > until) throw new Error('upstream never got the job');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('upstreams that hang, cut replies short or keep failing', () => {
  const budgeted = {
    POLL_FAILURE_BUDGET_MS: '700',
    IMAGEPIPELINE_TIMEOUT_MS: '150',
    IMAGEPIPELINE_RETRIES: '1',
    IMAGEPIPELINE_PROBE_INTERVAL_MS: '100',
  };

  const runWith = async (server: TestServer, fault: 'hang' | 'truncate') => {
    server.upstream.behaviour.stepsPerPoll = 1;
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a lighthouse', numInferenceSteps: 50 } });
    const id = created.data!.text2image.id;
    // Let it start, then break the upstream's status answers.
    await waitFor(async () => (await server.gql(JobDocument, { id })).data!.job!.status === 'PROCESSING');
    server.upstream.behaviour.statusFault = fault;
    const { values } = await collect(server.ws(), JobStatusDocument, { id }, 15_000);
    return values.at(-1)!.jobStatus;
  };

  it('a hanging upstream is timed out, retried within the budget, then the job fails ENGINE_UNREACHABLE', async () => {
    const server = await startTestServer({ env: budgeted });
    try {
      const job = await runWith(server, 'hang');
      expect(job.status).toBe('FAILURE');
      expect(job.error!.code).toBe('ENGINE_UNREACHABLE');
      expect(job.error!.message).toMatch(/stayed unreachable/);
      expect(job.error!.message).toMatch(/timeout|not answering/i);
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });

  it('a reply cut off mid-body is retried within the budget, then the job fails with what happened', async () => {
    const server = await startTestServer({ env: budgeted });
    try {
      const job = await runWith(server, 'truncate');
      expect(job.status).toBe('FAILURE');
      expect(job.error!.code).toBe('ENGINE_UNREACHABLE');
      expect(job.error!.message).toMatch(/cut off|not answering|socket|terminated/i);
    } finally {
      await server.stop();
    }
  });

  it('a circuit breaker stops hammering a failing upstream: calls drop to about one per probe instead of one per job per poll', async () => {
    const server = await startTestServer({
      env: { POLL_MIN_INTERVAL_MS: '10', POLL_MAX_INTERVAL_MS: '20', IMAGEPIPELINE_RETRIES: '0', IMAGEPIPELINE_PROBE_INTERVAL_MS: '250' },
    });
    try {
      server.upstream.behaviour.hold = true;
      for (let i = 0; i < 10; i++) await server.gql(Text2ImageDocument, { input: { prompt: `held ${i}` } });
      await waitFor(() => server.upstream.jobs.size === 10);
      const calls = () => [...server.upstream.jobs.values()].reduce((n, j) => n + j.statusCalls, 0);
      // Healthy: ten jobs polled every 10-20 ms.
      let before = calls();
      await new Promise((r) => setTimeout(r, 500));
      const healthyRate = calls() - before;
      server.upstream.behaviour.statusFault = 503;
      await new Promise((r) => setTimeout(r, 100));
      before = calls();
      await new Promise((r) => setTimeout(r, 1000));
      const brokenRate = calls() - before;
      // Ten jobs every 10-20 ms is hundreds a second when healthy (fewer on a loaded machine);
      // with the circuit open, one trial per 250 ms probe is about 4.
      expect(healthyRate).toBeGreaterThan(30);
      expect(brokenRate).toBeLessThanOrEqual(10);
      // It answers again: the probe closes the circuit and the jobs go on.
      server.upstream.behaviour.statusFault = null;
      server.upstream.behaviour.hold = false;
      server.upstream.release();
      const ids = (await server.gql(JobsDocument, { first: 20 })).data!.jobs.edges.map((e) => e.node.id);
      for (const id of ids) {
        const { values } = await collect(server.ws(), JobStatusDocument, { id }, 15_000);
        expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
      }
    } finally {
      await server.stop();
    }
  });
});

describe('an unwritable DATA_DIR', () => {
  it('fails the jobs whose images cannot be stored, clearly; the server stays up and recovers when the disk does', async () => {
    const server = await startTestServer();
    const images = path.join(server.dataDir, 'images');
    try {
      // A file where the image folder was: every write fails, as on a full or read-only disk.
      renameSync(images, `${images}.away`);
      writeFileSync(images, 'not a folder');
      const created = await server.gql(Text2ImageDocument, { input: { prompt: 'nowhere to go' } });
      const { values } = await collect(server.ws(), JobStatusDocument, { id: created.data!.text2image.id });
      const failed = values.at(-1)!.jobStatus;
      expect(failed.status).toBe('FAILURE');
      // The reason, without where the server keeps its files.
      expect(failed.error!.code).toBe('IMAGE_STORE_FAILED');
      expect(failed.error!.message).toMatch(/^the results could not be written to the image store: ENOTDIR: not a directory/);
      expect(failed.error!.message).not.toContain(server.dataDir);
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);

      rmSync(images);
      renameSync(`${images}.away`, images);
      const again = await server.gql(Text2ImageDocument, { input: { prompt: 'room again' } });
      const { values: after } = await collect(server.ws(), JobStatusDocument, { id: again.data!.text2image.id });
      expect(after.at(-1)!.jobStatus.status).toBe('SUCCESS');
      expect(readdirSync(images).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    } finally {
      await server.stop();
    }
  });
});
