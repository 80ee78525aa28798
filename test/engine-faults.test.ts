import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { collect, startTestServer, type TestServer } from './helpers/test-server.js';

describe('engine faults end a job clearly and never take the server down', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { POLL_FAILURE_BUDGET_MS: '300' } });
  });
  afterEach(() => {
    server.upstream.behaviour = { ...server.upstream.behaviour, failWith: null, malformedStatus: null, unavailableSubmits: 0 };
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
