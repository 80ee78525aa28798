import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelJobDocument, JobDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

describe('cancelJob', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { LOG_LEVEL: 'error' } });
  });
  afterAll(() => server.stop());

  it('cancels a pending job: the subscription ends CANCELED and the late upstream result is ignored', async () => {
    server.upstream.behaviour.hold = true;
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a castle' } });
    const id = created.data!.text2image.id;
    const sub = collect(server.ws(), JobStatusDocument, { id });
    await waitFor(async () => (await server.metrics()).sd_jobs_tracked === 1);

    const canceled = await server.gql(CancelJobDocument, { id });
    expect(canceled.errors).toBeUndefined();
    expect(canceled.data!.cancelJob.status).toBe('CANCELED');
    expect(canceled.data!.cancelJob.finishedAt).not.toBeNull();
    expect(canceled.data!.cancelJob.queuePosition).toBeNull();

    const { values } = await sub;
    expect(values.at(-1)!.jobStatus.status).toBe('CANCELED');
    expect((await server.metrics()).sd_jobs_tracked).toBe(0);

    // The upstream finishing afterwards changes nothing.
    server.upstream.behaviour.hold = false;
    server.upstream.release();
    await new Promise((r) => setTimeout(r, 100));
    const read = await server.gql(JobDocument, { id });
    expect(read.data!.job!.status).toBe('CANCELED');
    expect(read.data!.job!.downloadUrls).toEqual([]);

    // Canceling again is harmless.
    const again = await server.gql(CancelJobDocument, { id });
    expect(again.data!.cancelJob.status).toBe('CANCELED');
  });

  it('refuses to cancel a finished job, and an unknown one', async () => {
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a tree', numInferenceSteps: 5 } });
    const id = created.data!.text2image.id;
    await collect(server.ws(), JobStatusDocument, { id });
    const finished = await server.gql(CancelJobDocument, { id });
    expect(finished.errors![0]!.extensions!.code).toBe('JOB_ALREADY_FINISHED');
    expect(finished.errors![0]!.message).toMatch(/SUCCESS/);
    expect((await server.gql(JobDocument, { id })).data!.job!.status).toBe('SUCCESS');

    const unknown = await server.gql(CancelJobDocument, { id: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.errors![0]!.extensions!.code).toBe('NOT_FOUND');
  });
});
