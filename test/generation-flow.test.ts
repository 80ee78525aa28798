import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JobDocument,
  JobStatusDocument,
  Text2ImageDocument,
  Image2ImageDocument,
  InpaintingDocument,
  type JobFieldsFragment,
} from '../src/client/generated/graphql.js';
import { collect, startTestServer, waitFor, type TestServer } from './helpers/test-server.js';

describe('generation flow through the imagepipeline engine', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.stop());

  it('creates a PENDING job at once, streams PENDING → PROCESSING with progress → SUCCESS, and serves every image', async () => {
    const created = await server.gql(Text2ImageDocument, {
      input: {
        modelId: 'sd1.5',
        prompt: 'A handsome man in a white shirt in the woods, close-up, photorealistic',
        negativePrompt: 'error, cropped, worst quality',
        numInferenceSteps: 20,
        guidanceScale: 7.5,
        width: 512,
        height: 512,
        samples: 2,
        seed: 12345,
        safetyChecker: true,
      },
    });
    expect(created.errors).toBeUndefined();
    const job = created.data!.text2image;
    expect(job.status).toBe('PENDING');
    expect(job.mode).toBe('TEXT2IMAGE');
    expect(job.seed).toBe(12345);
    expect(job.downloadUrls).toEqual([]);
    expect(job.progress).toEqual({ step: 0, totalSteps: 20, fraction: 0 });

    const { values, errors } = await collect(server.ws(), JobStatusDocument, { id: job.id });
    expect(errors).toEqual([]);
    const states = values.map((v) => v.jobStatus);
    const statuses = [...new Set(states.map((s) => s.status))];
    expect(statuses).toEqual(expect.arrayContaining(['PROCESSING', 'SUCCESS']));
    expect(statuses.at(-1)).toBe('SUCCESS');
    // The first value is the current state; statuses only move forward.
    const order = ['PENDING', 'PROCESSING', 'SUCCESS'];
    const ranks = states.map((s) => order.indexOf(s.status));
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    const processing = states.filter((s) => s.status === 'PROCESSING');
    expect(processing.length).toBeGreaterThan(1);
    expect(processing[0]!.progress.step).toBeGreaterThan(0);
    expect(processing[0]!.progress.fraction).toBeGreaterThan(0);
    expect(processing[0]!.progress.fraction).toBeLessThan(1);
    expect(processing.map((p) => p.progress.step)).toEqual([...processing.map((p) => p.progress.step)].sort((a, b) => a - b));

    const done = states.at(-1)!;
    expect(done.progress.fraction).toBe(1);
    expect(done.startedAt).not.toBeNull();
    expect(done.finishedAt).not.toBeNull();
    expect(done.downloadUrls).toHaveLength(2);
    for (const url of done.downloadUrls) {
      // Served by this server, not the upstream: links stay valid after the upstream's expire.
      expect(url.startsWith(server.url)).toBe(true);
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(bytes.subarray(1, 4).toString('ascii')).toBe('PNG');
    }

    // The upstream received the contract's snake_case body.
    const upstreamJob = [...server.upstream.jobs.values()].at(-1)!;
    expect(upstreamJob.body).toMatchObject({
      model_id: 'sd1.5',
      num_inference_steps: 20,
      guidance_scale: 7.5,
      samples: 2,
      seed: 12345,
      safety_checker: true,
      refiner: false,
    });

    // Images survive the upstream forgetting everything.
    server.upstream.forgetAll();
    const again = await server.gql(JobDocument, { id: job.id });
    expect(again.data!.job!.status).toBe('SUCCESS');
    expect((await fetch(again.data!.job!.downloadUrls[0]!)).status).toBe(200);
  });

  it('subscribing to a finished job yields its final state once and completes', async () => {
    const created = await server.gql(Text2ImageDocument, { input: { prompt: 'a cat', numInferenceSteps: 5 } });
    const id = created.data!.text2image.id;
    await collect(server.ws(), JobStatusDocument, { id });
    const { values } = await collect(server.ws(), JobStatusDocument, { id });
    expect(values.map((v) => v.jobStatus.status)).toEqual(['SUCCESS']);
  });

  it('reports a random seed when none (or -1) is given', async () => {
    const a = await server.gql(Text2ImageDocument, { input: { prompt: 'a dog' } });
    const b = await server.gql(Text2ImageDocument, { input: { prompt: 'a dog', seed: -1 } });
    for (const r of [a, b]) {
      expect(r.data!.text2image.seed).toBeGreaterThanOrEqual(0);
      expect(r.data!.text2image.parameters.seed).toBe(r.data!.text2image.seed);
    }
    expect(a.data!.text2image.seed).not.toBe(b.data!.text2image.seed);
  });

  it('runs image2image and inpainting, forwarding the images and strength', async () => {
    const i2i = await server.gql(Image2ImageDocument, {
      input: { prompt: 'a cottage, watercolor', initImage: 'https://example.test/cottage.png', strength: 0.6 },
    });
    expect(i2i.errors).toBeUndefined();
    const inp = await server.gql(InpaintingDocument, {
      input: {
        prompt: 'a red door',
        initImage: 'https://example.test/img2img.png',
        maskImage: 'https://example.test/mask_image.png',
      },
    });
    expect(inp.errors).toBeUndefined();
    const jobs: JobFieldsFragment[] = [i2i.data!.image2image, inp.data!.inpainting];
    expect(jobs.map((j) => j.mode)).toEqual(['IMAGE2IMAGE', 'INPAINTING']);
    expect(jobs[0]!.parameters.strength).toBe(0.6);
    expect(jobs[1]!.parameters.strength).toBe(0.8);
    for (const job of jobs) {
      const { values } = await collect(server.ws(), JobStatusDocument, { id: job.id });
      expect(values.at(-1)!.jobStatus.status).toBe('SUCCESS');
    }
    const bodies = [...server.upstream.jobs.values()].slice(-2).map((j) => j.body);
    expect(bodies[0]).toMatchObject({ init_image: 'https://example.test/cottage.png', strength: 0.6 });
    expect(bodies[1]).toMatchObject({ mask_image: 'https://example.test/mask_image.png', strength: 0.8 });
    // At the defaults the upstream gets the contract's body alone: no extensions.
    for (const body of bodies)
      for (const extension of ['mask_blur', 'keep_unmasked', 'scheduler']) expect(body).not.toHaveProperty(extension);
  });

  it("passes inpainting's maskBlur and keepUnmasked on only when they are not the defaults, and echoes them with no noise source", async () => {
    const input = {
      prompt: 'a blue door',
      initImage: 'https://example.test/img2img.png',
      maskImage: 'https://example.test/mask_image.png',
    };
    const blur = await server.gql(InpaintingDocument, { input: { ...input, seed: 101, maskBlur: 0 } });
    const raw = await server.gql(InpaintingDocument, { input: { ...input, seed: 102, keepUnmasked: false } });
    expect(blur.data!.inpainting.parameters).toMatchObject({ maskBlur: 0, keepUnmasked: true, noise: null });
    expect(raw.data!.inpainting.parameters).toMatchObject({ maskBlur: 4, keepUnmasked: false, noise: null });
    // Submitted in the background: wait until the upstream has both.
    const sent = () => [...server.upstream.jobs.values()].map((j) => j.body).filter((b) => b.prompt === 'a blue door');
    await waitFor(() => sent().length === 2);
    const bodies = [blur.data!.inpainting.seed, raw.data!.inpainting.seed].map((seed) => sent().find((b) => b.seed === seed)!);
    expect(bodies[0]).toMatchObject({ mask_blur: 0 });
    expect(bodies[0]).not.toHaveProperty('keep_unmasked');
    expect(bodies[1]).toMatchObject({ keep_unmasked: false });
    expect(bodies[1]).not.toHaveProperty('mask_blur');
  });
});
