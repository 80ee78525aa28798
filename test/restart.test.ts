import { describe, expect, it } from 'vitest';
import { JobDocument, JobStatusDocument, Text2ImageDocument } from '../src/client/generated/graphql.js';
import { FakeImagePipeline } from './fixtures/fake-imagepipeline.js';
import { collect, startTestServer, waitFor } from './helpers/test-server.js';

describe('jobs survive a restart of the server', () => {
  it('a job stopped mid-processing finishes after the restart, and a new subscription sees the end', async () => {
    const upstream = new FakeImagePipeline();
    await upstream.start();
    upstream.behaviour.stepsPerPoll = 1;
    const first = await startTestServer({ upstream });
    const { dataDir, key } = first;
    const created = await first.gql(Text2ImageDocument, { input: { prompt: 'a windmill', numInferenceSteps: 40 } });
    const id = created.data!.text2image.id;
    await waitFor(async () => (await first.gql(JobDocument, { id })).data?.job?.status === 'PROCESSING');
    await first.stop({ keepData: true });

    const stepsWhileDown = [...upstream.jobs.values()][0]!.step;
    expect(stepsWhileDown).toBeLessThan(40);
    upstream.behaviour.stepsPerPoll = 10;

    const second = await startTestServer({ upstream, dataDir });
    try {
      // The key made before the restart still works: keys live in the same database.
      const before = await second.gql(JobDocument, { id }, key);
      expect(['PROCESSING', 'SUCCESS']).toContain(before.data!.job!.status);
      const { values, errors } = await collect(second.ws({ apiKey: key }), JobStatusDocument, { id });
      expect(errors).toEqual([]);
      const last = values.at(-1)!.jobStatus;
      expect(last.status).toBe('SUCCESS');
      expect(last.downloadUrls).toHaveLength(1);
      expect((await fetch(last.downloadUrls[0]!)).status).toBe(200);
      // Resumed by polling the same upstream job, not by submitting it again.
      expect(upstream.submits).toBe(1);
    } finally {
      await second.stop({ keepData: true });
      await upstream.stop();
    }
  });

  it('a job that never reached the engine before the stop is submitted after the restart', async () => {
    const upstream = new FakeImagePipeline();
    await upstream.start();
    upstream.behaviour.unavailableSubmits = 1_000_000;
    const first = await startTestServer({ upstream });
    const created = await first.gql(Text2ImageDocument, { input: { prompt: 'a bridge', numInferenceSteps: 10 } });
    const id = created.data!.text2image.id;
    await waitFor(() => upstream.submits > 0);
    await first.stop({ keepData: true });
    expect(upstream.jobs.size).toBe(0);

    upstream.behaviour.unavailableSubmits = 0;
    const second = await startTestServer({ upstream, dataDir: first.dataDir });
    try {
      const { values } = await collect(second.ws({ apiKey: first.key }), JobStatusDocument, { id });
      expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
      expect(upstream.jobs.size).toBe(1);
    } finally {
      await second.stop({ keepData: true });
      await upstream.stop();
    }
  });

  it('a job the engine forgot across the restart ends FAILURE with a reason instead of staying PENDING', async () => {
    const upstream = new FakeImagePipeline();
    await upstream.start();
    upstream.behaviour.hold = true;
    const first = await startTestServer({ upstream });
    const created = await first.gql(Text2ImageDocument, { input: { prompt: 'a ship' } });
    const id = created.data!.text2image.id;
    await waitFor(() => upstream.jobs.size === 1);
    await waitFor(async () => (await first.gql(JobDocument, { id })).data?.job?.queuePosition === 0);
    await first.stop({ keepData: true });
    upstream.forgetAll();

    const second = await startTestServer({ upstream, dataDir: first.dataDir });
    try {
      const { values } = await collect(second.ws({ apiKey: first.key }), JobStatusDocument, { id });
      const last = values.at(-1)!.jobStatus;
      expect(last.status).toBe('FAILURE');
      expect(last.error!.code).toBe('ENGINE_LOST_JOB');
    } finally {
      await second.stop({ keepData: true });
      await upstream.stop();
    }
  });
});
